/**
 * The extension's settings and what they become on the wire.
 *
 * This module must not import `vscode`: the Node test (test/server.test.js) loads it to start the real
 * `repolm serve` with exactly the command and initializationOptions the extension sends.
 *
 * The server (server/settings.py) rejects unknown keys, so only settings it knows go into
 * `initializationOptions` / `workspace/didChangeConfiguration`; `serverPath` and `debounceMs` stay
 * on the client.
 */

export interface RepolmSettings {
  /** The `repolm` executable, started as `<serverPath> serve`. */
  serverPath: string;
  /** A local Hugging Face model folder; empty: the server's embedded default. */
  model: string;
  /** A PEFT adapter folder; empty: none. */
  adapter: string;
  /** Inline (ghost text) completions while typing. */
  inlineCompletionsEnabled: boolean;
  /** Delay after the last keystroke before an inline completion request. */
  debounceMs: number;
}

export const DEFAULT_SETTINGS: Readonly<RepolmSettings> = Object.freeze({
  serverPath: 'repolm',
  model: '',
  adapter: '',
  inlineCompletionsEnabled: true,
  debounceMs: 150,
});

/** Reads a value of the `repolm` configuration section, e.g. `vscode.workspace.getConfiguration('repolm').get`. */
export type SettingGetter = <T>(key: string, defaultValue: T) => T;

function text(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value.trim() : fallback;
}

/** Settings from a configuration section, with wrong types replaced by the defaults. */
export function readSettings(get: SettingGetter): RepolmSettings {
  const debounce = get<unknown>('debounceMs', DEFAULT_SETTINGS.debounceMs);
  const enabled = get<unknown>('inlineCompletions.enabled', DEFAULT_SETTINGS.inlineCompletionsEnabled);
  return {
    serverPath: text(get<unknown>('serverPath', DEFAULT_SETTINGS.serverPath), DEFAULT_SETTINGS.serverPath) ||
      DEFAULT_SETTINGS.serverPath,
    model: text(get<unknown>('model', DEFAULT_SETTINGS.model), DEFAULT_SETTINGS.model),
    adapter: text(get<unknown>('adapter', DEFAULT_SETTINGS.adapter), DEFAULT_SETTINGS.adapter),
    inlineCompletionsEnabled: typeof enabled === 'boolean' ? enabled : DEFAULT_SETTINGS.inlineCompletionsEnabled,
    debounceMs:
      typeof debounce === 'number' && Number.isFinite(debounce) && debounce >= 0
        ? Math.min(debounce, 5000)
        : DEFAULT_SETTINGS.debounceMs,
  };
}

/** What the server receives, shaped as server/settings.py reads it. */
export interface ServerSettings {
  repolm: {
    model: string;
    adapter: string;
    completion: { enabled: boolean };
  };
}

/** `initializationOptions` on start, and `settings` of `workspace/didChangeConfiguration` on change. */
export function initializationOptions(settings: RepolmSettings): ServerSettings {
  return {
    repolm: {
      model: settings.model,
      adapter: settings.adapter,
      completion: { enabled: settings.inlineCompletionsEnabled },
    },
  };
}

/**
 * The server process: `<serverPath> serve`, over stdio. A leading `~/` in serverPath is the home folder
 * and `${workspaceFolder}` the workspace root, as in VS Code's own settings.
 */
export function serverCommand(
  settings: RepolmSettings,
  where: { home?: string; workspaceFolder?: string } = {},
): { command: string; args: string[] } {
  let command = settings.serverPath;
  if (where.workspaceFolder !== undefined) {
    command = command.split('${workspaceFolder}').join(where.workspaceFolder);
  }
  if (where.home !== undefined && (command === '~' || command.startsWith('~/'))) {
    command = where.home + command.slice(1);
  }
  return { command, args: ['serve'] };
}

/** Whether a configuration change needs a server restart (the executable) or only a notification. */
export function changeKind(before: RepolmSettings, after: RepolmSettings): 'restart' | 'notify' | 'none' {
  if (before.serverPath !== after.serverPath) {
    return 'restart';
  }
  const a = JSON.stringify(initializationOptions(before));
  const b = JSON.stringify(initializationOptions(after));
  return a === b ? 'none' : 'notify';
}

/** Languages the server indexes and completes (VS Code language ids). */
export const LANGUAGES: readonly string[] = Object.freeze([
  'python',
  'javascript',
  'javascriptreact',
  'typescript',
  'typescriptreact',
  'go',
  'rust',
  'java',
]);
