/**
 * repolm for VS Code: starts `repolm serve` for the workspace and wires its LSP features into the editor.
 *
 * - inline completions (ghost text) through vscode-languageclient's LSP 3.18 inline completion feature,
 *   debounced and switchable in the middleware;
 * - hovers (the server's symbol card and explanation) with `path:line` citations turned into links;
 * - commands: reindex, explain the symbol at the cursor, search the codebase, show the status;
 * - a status-bar item fed by the server's `$/progress` reports.
 */

import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  Middleware,
  ServerOptions,
  State,
  TransportKind,
  WorkDoneProgress,
  WorkDoneProgressBegin,
  WorkDoneProgressEnd,
  WorkDoneProgressReport,
} from 'vscode-languageclient/node';

import { linkCitations } from './citations';
import {
  ExplainResult,
  explainArguments,
  explanationMarkdown,
  hitLabel,
  isSearchHits,
  statusMarkdown,
  streamingMarkdown,
} from './format';
import {
  changeKind,
  initializationOptions,
  LANGUAGES,
  readSettings,
  RepolmSettings,
  serverCommand,
} from './initOptions';

const VIEW_SCHEME = 'repolm-view';
const EXPLAIN_TOKEN = 'repolm-explain-'; // the work-done tokens of streamed explanations

let client: LanguageClient | undefined;
let settings: RepolmSettings;
let status: StatusItem;
let output: vscode.OutputChannel;
let views: ViewsProvider;

function currentSettings(): RepolmSettings {
  const section = vscode.workspace.getConfiguration('repolm');
  return readSettings((key, fallback) => section.get(key, fallback));
}

function workspaceRoot(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

// ---------------------------------------------------------------------------------------------------------
// Status bar

class StatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  state = 'stopped';
  progress = '';

  constructor() {
    this.item.command = 'repolm.showStatus';
    this.item.name = 'repolm';
    this.show('stopped');
    this.item.show();
  }

  show(state: string, progress = '', tooltip = ''): void {
    this.state = state;
    this.progress = progress;
    const icon =
      state === 'indexing' || state === 'starting'
        ? '$(sync~spin)'
        : state === 'error' || state === 'stopped'
          ? '$(warning)'
          : '$(database)';
    this.item.text = `${icon} repolm${progress ? ` ${progress}` : state === 'ready' ? '' : `: ${state}`}`;
    this.item.tooltip = tooltip || `repolm: ${state}${progress ? ` (${progress})` : ''} — click for status`;
  }

  /** A `$/progress` value from the server (indexing reports). */
  onProgress(value: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd): void {
    if (value.kind === 'begin') {
      this.show('indexing', value.percentage !== undefined ? `${value.percentage}%` : '', value.title);
    } else if (value.kind === 'report') {
      const percent = value.percentage !== undefined ? `${value.percentage}%` : '';
      this.show('indexing', percent, `repolm: indexing ${value.message ?? ''}`);
    } else {
      const failed = (value.message ?? '').includes('failed');
      this.show(failed ? 'error' : 'ready', '', `repolm: ${value.message ?? 'done'}`);
    }
  }

  dispose(): void {
    this.item.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Read-only markdown pages (explanations, status) shown in the markdown preview

class ViewsProvider implements vscode.TextDocumentContentProvider {
  private readonly pages = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.pages.get(uri.toString()) ?? '';
  }

  /** Replace a page's text; an open preview of it follows. */
  update(name: string, markdown: string): vscode.Uri {
    const uri = vscode.Uri.from({ scheme: VIEW_SCHEME, path: `/${name}.md` });
    this.pages.set(uri.toString(), markdown);
    this.changed.fire(uri);
    return uri;
  }

  async show(name: string, markdown: string): Promise<void> {
    const uri = this.update(name, markdown);
    try {
      await vscode.commands.executeCommand('markdown.showPreviewToSide', uri);
    } catch {
      const document = await vscode.workspace.openTextDocument(uri);
      await vscode.window.showTextDocument(document, { viewColumn: vscode.ViewColumn.Beside, preview: true });
    }
  }
}

/** Citations of files in the workspace become links that open the file at the line. */
function withLinks(markdown: string): string {
  const root = workspaceRoot();
  if (root === undefined) {
    return markdown;
  }
  return linkCitations(markdown, {
    exists: (relative) => fs.existsSync(path.join(root, relative)),
    link: (relative, line) => `${vscode.Uri.file(path.join(root, relative)).toString()}#L${line}`,
  });
}

// ---------------------------------------------------------------------------------------------------------
// The language client

function delay(ms: number, token: vscode.CancellationToken): Promise<boolean> {
  return new Promise((resolve) => {
    if (ms <= 0) {
      resolve(!token.isCancellationRequested);
      return;
    }
    const timer = setTimeout(() => {
      listener.dispose();
      resolve(!token.isCancellationRequested);
    }, ms);
    const listener = token.onCancellationRequested(() => {
      clearTimeout(timer);
      listener.dispose();
      resolve(false);
    });
  });
}

const middleware: Middleware = {
  // Completions are shown as ghost text only: a suggest-widget request would cancel the inline one
  // on the server (it answers the latest request only).
  provideCompletionItem: () => undefined,
  provideInlineCompletionItems: async (document, position, context, token, next) => {
    if (!settings.inlineCompletionsEnabled) {
      return null;
    }
    if (context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic) {
      if (!(await delay(settings.debounceMs, token))) {
        return null;
      }
    }
    return next(document, position, context, token);
  },
  provideHover: async (document, position, token, next) => {
    const hover = await next(document, position, token);
    if (!hover) {
      return hover;
    }
    const contents = hover.contents.map((part) => {
      if (part instanceof vscode.MarkdownString) {
        const linked = new vscode.MarkdownString(withLinks(part.value), part.supportThemeIcons);
        linked.supportHtml = false;
        return linked;
      }
      return part;
    });
    return new vscode.Hover(contents, hover.range);
  },
  handleWorkDoneProgress: (token, params, next) => {
    if (!String(token).startsWith(EXPLAIN_TOKEN)) {
      status.onProgress(params); // indexing; an explanation streams into its own page
    }
    next(token, params);
  },
};

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const root = workspaceRoot();
  const { command, args } = serverCommand(settings, { home: os.homedir(), workspaceFolder: root });
  const serverOptions: ServerOptions = {
    command,
    args,
    transport: TransportKind.stdio,
    options: root ? { cwd: root } : undefined,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.map((language) => ({ scheme: 'file', language })),
    initializationOptions: initializationOptions(settings),
    outputChannel: output,
    middleware,
  };
  const languageClient = new LanguageClient('repolm', 'repolm', serverOptions, clientOptions);
  languageClient.registerProposedFeatures(); // textDocument/inlineCompletion (LSP 3.18)
  context.subscriptions.push(
    languageClient.onDidChangeState((event) => {
      if (event.newState === State.Running && status.state !== 'indexing') {
        status.show('ready');
      } else if (event.newState === State.Stopped) {
        status.show('stopped');
      }
    }),
  );
  client = languageClient;
  status.show('starting');
  try {
    await languageClient.start();
  } catch (error) {
    status.show('error', '', `repolm: ${String(error)}`);
    const open = 'Open settings';
    const choice = await vscode.window.showErrorMessage(
      `repolm: could not start "${command} ${args.join(' ')}": ${String(error)}. ` +
        'Install repolm (pip install -e .) or set repolm.serverPath.',
      open,
    );
    if (choice === open) {
      await vscode.commands.executeCommand('workbench.action.openSettings', 'repolm.serverPath');
    }
  }
}

async function stopClient(): Promise<void> {
  const running = client;
  client = undefined;
  if (running !== undefined && running.state !== State.Stopped) {
    await running.stop();
  }
  await running?.dispose();
}

function runningClient(): LanguageClient | undefined {
  if (client === undefined || client.state !== State.Running) {
    void vscode.window.showWarningMessage('repolm: the language server is not running.');
    return undefined;
  }
  return client;
}

async function serverCommandRequest<T>(name: string, args: unknown[]): Promise<T> {
  const running = runningClient();
  if (running === undefined) {
    throw new Error('the language server is not running');
  }
  return (await running.sendRequest(ExecuteCommandRequest.type, { command: name, arguments: args })) as T;
}

function reportError(action: string, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  void vscode.window.showErrorMessage(`repolm: ${action} failed: ${message}`);
}

// ---------------------------------------------------------------------------------------------------------
// Commands

async function reindex(): Promise<void> {
  if (runningClient() === undefined) {
    return;
  }
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'repolm: reindexing the workspace' },
    async () => {
      try {
        const result = await serverCommandRequest<{ done: boolean; generation: number }>('repolm.reindex', []);
        const message = result.done
          ? `repolm: index up to date (generation ${result.generation}).`
          : 'repolm: reindexing is still running in the background.';
        void vscode.window.showInformationMessage(message);
      } catch (error) {
        reportError('reindex', error);
      }
    },
  );
}

async function explainSymbol(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined) {
    void vscode.window.showWarningMessage('repolm: open a file and put the cursor on a symbol.');
    return;
  }
  const running = runningClient();
  if (running === undefined) {
    return;
  }
  const position = editor.selection.active;
  const word = editor.document.getText(editor.document.getWordRangeAtPosition(position)) || 'symbol';
  const page = `explain-${word}`;
  // The page opens at once and fills as the model writes; the checked answer replaces it at the end.
  const token = `${EXPLAIN_TOKEN}${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const streamed = running.onProgress(WorkDoneProgress.type, token, (value) => {
    if (value.kind === 'report' && value.message) {
      views.update(page, streamingMarkdown(word, value.message));
    }
  });
  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Window, title: `repolm: explaining ${word}` },
    async () => {
      try {
        await views.show(page, streamingMarkdown(word, ''));
        const result = await serverCommandRequest<ExplainResult>(
          'repolm.explain',
          explainArguments(editor.document.uri.toString(), position, token),
        );
        await views.show(page, withLinks(explanationMarkdown(result, result.card?.qualname ?? word)));
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        views.update(page, `# ${word}\n\nrepolm: explain failed: ${message}\n`);
        reportError('explain', error);
      } finally {
        streamed.dispose();
      }
    },
  );
}

interface HitItem extends vscode.QuickPickItem {
  file: string;
  line: number;
}

async function searchCodebase(initial?: string): Promise<void> {
  const root = workspaceRoot();
  if (runningClient() === undefined || root === undefined) {
    return;
  }
  const editor = vscode.window.activeTextEditor;
  const selected = editor && !editor.selection.isEmpty ? editor.document.getText(editor.selection) : '';
  const query =
    typeof initial === 'string' && initial
      ? initial
      : await vscode.window.showInputBox({
          prompt: 'Search the codebase (hybrid: keywords and meaning)',
          placeHolder: 'e.g. where are discounts applied',
          value: selected.split('\n')[0],
        });
  if (!query || !query.trim()) {
    return;
  }
  const picker = vscode.window.createQuickPick<HitItem>();
  picker.title = `repolm: ${query}`;
  picker.placeholder = 'Searching…';
  picker.busy = true;
  picker.matchOnDescription = true;
  picker.show();
  try {
    const hits = await serverCommandRequest<unknown>('repolm.search', [{ query, k: 20 }]);
    if (!isSearchHits(hits)) {
      throw new Error('unexpected answer from repolm.search');
    }
    picker.items = hits.map((hit) => ({ ...hitLabel(hit), file: path.join(root, hit.path), line: hit.start_line }));
    picker.placeholder = hits.length ? 'Open a result' : 'No results';
  } catch (error) {
    picker.hide();
    reportError('search', error);
    return;
  } finally {
    picker.busy = false;
  }
  picker.onDidAccept(async () => {
    const [item] = picker.selectedItems;
    picker.hide();
    if (item !== undefined) {
      const line = Math.max(item.line - 1, 0);
      const document = await vscode.workspace.openTextDocument(vscode.Uri.file(item.file));
      const range = new vscode.Range(line, 0, line, 0);
      await vscode.window.showTextDocument(document, { selection: range });
    }
  });
  picker.onDidHide(() => picker.dispose());
}

/** `repolm status <root> --json`: the server has no status request, so ask the CLI next to it. */
function indexStatus(root: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(
      serverCommand(settings, { home: os.homedir(), workspaceFolder: root }).command,
      ['status', root, '--json'],
      { cwd: root, timeout: 30000, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error((stderr || error.message).trim()));
          return;
        }
        try {
          resolve(JSON.parse(stdout) as Record<string, unknown>);
        } catch (parseError) {
          reject(parseError);
        }
      },
    );
  });
}

async function showStatus(): Promise<void> {
  const root = workspaceRoot();
  let index: Record<string, unknown> | null = null;
  let indexError = root === undefined ? 'No workspace folder is open.' : '';
  if (root !== undefined) {
    try {
      index = await indexStatus(root);
    } catch (error) {
      indexError = `No index status: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  const server = {
    state: client === undefined ? 'stopped' : status.state,
    progress: status.progress,
    model: settings.model,
    adapter: settings.adapter,
    inline: settings.inlineCompletionsEnabled,
  };
  await views.show('status', statusMarkdown(server, index, indexError));
}

// ---------------------------------------------------------------------------------------------------------
// Activation

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  settings = currentSettings();
  output = vscode.window.createOutputChannel('repolm');
  status = new StatusItem();
  views = new ViewsProvider();
  context.subscriptions.push(
    output,
    status,
    vscode.workspace.registerTextDocumentContentProvider(VIEW_SCHEME, views),
    vscode.commands.registerCommand('repolm.reindexWorkspace', reindex),
    vscode.commands.registerCommand('repolm.explainSymbol', explainSymbol),
    vscode.commands.registerCommand('repolm.searchCodebase', searchCodebase),
    vscode.commands.registerCommand('repolm.showStatus', showStatus),
    vscode.commands.registerCommand('repolm.restartServer', async () => {
      await stopClient();
      await startClient(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (!event.affectsConfiguration('repolm')) {
        return;
      }
      const before = settings;
      settings = currentSettings();
      const kind = changeKind(before, settings);
      if (kind === 'restart') {
        await stopClient();
        await startClient(context);
      } else if (kind === 'notify' && client?.state === State.Running) {
        await client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: initializationOptions(settings),
        });
      }
    }),
  );
  await startClient(context);
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
