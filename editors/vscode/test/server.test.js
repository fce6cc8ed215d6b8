// Drives the real `repolm serve` over stdio the way the extension does: the same command, the same
// initializationOptions (out/initOptions.js, compiled from src/initOptions.ts), then an inline completion,
// a hover, the commands and a configuration change, on a fixture repository written to a temp folder.
//
// Needs `npm run compile` first and `repolm` on PATH (or REPOLM_SERVER=/path/to/repolm).
// Run: node --test test/server.test.js

'use strict';

const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, test } = require('node:test');
const { pathToFileURL } = require('node:url');
const rpc = require('vscode-languageserver-protocol/node');

const { DEFAULT_SETTINGS, initializationOptions, readSettings, serverCommand } = require('../out/initOptions');
const { linkCitations } = require('../out/citations');
const {
  explainArguments,
  explanationMarkdown,
  hitLabel,
  isSearchHits,
  streamingMarkdown,
} = require('../out/format');

const TIMEOUT = 240_000; // loading the model the first time converts a GGUF; completions run on a CPU

const PRICING = `"""Price helpers shared by the shop."""


def apply_discount(price, percent):
    """Return price reduced by percent (0-100)."""
    return price * (100 - percent) / 100


def add_tax(price, rate):
    """Return price with tax added at rate (e.g. 0.2)."""
    return price * (1 + rate)
`;
const DEF_LINE = 4; // 1-based line of `def apply_discount`

const CHECKOUT = `from util.pricing import add_tax, apply_discount


def checkout_total(cart, percent, rate):
    """Total of the cart after the discount and tax."""
    subtotal = sum(item.price for item in cart)
    discounted = apply_discount(subtotal, percent)
    return add_tax(discounted, rate)


def member_total(price):
    """Members get ten percent off."""
    total = apply_
`;
const CURSOR = { line: 12, character: '    total = apply_'.length };
const USE = { line: 6, character: '    discounted = apply_d'.length }; // on the call of apply_discount

const FILES = {
  'util/__init__.py': '',
  'util/pricing.py': PRICING,
  'app/__init__.py': '',
  'app/checkout.py': CHECKOUT,
  'docs/pricing.md': '# Pricing\n\nDiscounts use `apply_discount(price, percent)` before `add_tax`.\n',
};

// Exactly what the extension computes from its settings, with only the executable located for the test.
const settings = readSettings((key, fallback) =>
  key === 'serverPath' ? process.env.REPOLM_SERVER || DEFAULT_SETTINGS.serverPath : fallback,
);

let root;
let server;
let connection;
const progress = [];
const logs = [];
let stderr = '';

function uri(relative) {
  return pathToFileURL(path.join(root, relative)).href;
}

function withTimeout(promise, what, ms = TIMEOUT) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms / 1000} s\n${stderr.slice(-4000)}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function request(method, params, what = method) {
  return withTimeout(connection.sendRequest(method, params), what);
}

function command(name, args) {
  return request('workspace/executeCommand', { command: name, arguments: args }, name);
}

before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'repolm-vscode-'));
  for (const [relative, text] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(root, relative)), { recursive: true });
    fs.writeFileSync(path.join(root, relative), text);
  }
  const { command: executable, args } = serverCommand(settings);
  const env = { ...process.env, HF_HUB_OFFLINE: '1' };
  // Build the index first so the test does not depend on the timing of the background build.
  execFileSync(executable, ['index', root], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: TIMEOUT });

  server = spawn(executable, args, { cwd: root, env, stdio: ['pipe', 'pipe', 'pipe'] });
  server.stderr.on('data', (chunk) => {
    stderr += chunk.toString();
  });
  connection = rpc.createProtocolConnection(
    new rpc.StreamMessageReader(server.stdout),
    new rpc.StreamMessageWriter(server.stdin),
  );
  // What vscode-languageclient answers on the extension's behalf.
  connection.onRequest('window/workDoneProgress/create', () => null);
  connection.onRequest('client/registerCapability', () => null);
  connection.onRequest('workspace/configuration', (params) => params.items.map(() => null));
  // Progress under tokens the server made (indexing); onProgress handlers take the client's own tokens.
  connection.onUnhandledProgress((params) => progress.push(params.value));
  connection.onNotification('window/logMessage', (params) => logs.push(params.message));
  connection.onNotification('window/showMessage', (params) => logs.push(params.message));
  connection.listen();

  const result = await request('initialize', {
    processId: process.pid,
    rootUri: pathToFileURL(root).href,
    workspaceFolders: [{ uri: pathToFileURL(root).href, name: path.basename(root) }],
    initializationOptions: initializationOptions(settings),
    capabilities: {
      window: { workDoneProgress: true },
      workspace: { configuration: true, didChangeWatchedFiles: { dynamicRegistration: true } },
      textDocument: {
        synchronization: { didSave: true },
        hover: { contentFormat: ['markdown', 'plaintext'] },
        completion: { completionItem: { snippetSupport: false } },
        inlineCompletion: { dynamicRegistration: true },
      },
    },
  });
  const capabilities = result.capabilities;
  assert.ok(capabilities.inlineCompletionProvider, 'the server offers inline completions');
  assert.ok(capabilities.hoverProvider, 'the server offers hovers');
  const commands = capabilities.executeCommandProvider?.commands ?? [];
  for (const name of ['repolm.reindex', 'repolm.explain', 'repolm.search']) {
    assert.ok(commands.includes(name), `the server offers ${name}: ${commands}`);
  }
  await connection.sendNotification('initialized', {});
  await connection.sendNotification('textDocument/didOpen', {
    textDocument: { uri: uri('app/checkout.py'), languageId: 'python', version: 1, text: CHECKOUT },
  });
});

after(async () => {
  try {
    if (connection !== undefined) {
      await withTimeout(connection.sendRequest('shutdown'), 'shutdown', 20_000);
      await connection.sendNotification('exit');
    }
  } catch {
    // the process is killed below either way
  } finally {
    connection?.dispose();
    if (server !== undefined && server.exitCode === null) {
      const exited = new Promise((resolve) => server.once('exit', resolve));
      const timer = setTimeout(() => server.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (root !== undefined) {
      fs.rmSync(root, { recursive: true, force: true });
    }
  }
});

test('the settings the extension sends are the ones the server understands', () => {
  assert.deepEqual(initializationOptions(settings), {
    repolm: { model: '', adapter: '', completion: { enabled: true } },
  });
  // Wrong types fall back to defaults instead of reaching the server.
  const odd = readSettings((key, fallback) => (key === 'debounceMs' ? -5 : key === 'model' ? 42 : fallback));
  assert.equal(odd.debounceMs, DEFAULT_SETTINGS.debounceMs);
  assert.equal(odd.model, '');
  const warnings = logs.filter((line) => /initializationOptions|unknown setting/.test(line));
  assert.deepEqual(warnings, [], 'the server accepted the initializationOptions');
});

test('reindex answers with a generation and reports $/progress for the status bar', { timeout: TIMEOUT }, async () => {
  const result = await command('repolm.reindex', []);
  assert.equal(result.done, true);
  assert.ok(result.generation >= 1, JSON.stringify(result));
  const kinds = progress.map((value) => value.kind);
  assert.ok(kinds.includes('begin') && kinds.includes('end'), `progress seen: ${JSON.stringify(progress)}`);
});

test('inline completion uses a function defined only in another file', { timeout: TIMEOUT }, async () => {
  const result = await request('textDocument/inlineCompletion', {
    textDocument: { uri: uri('app/checkout.py') },
    position: CURSOR,
    context: { triggerKind: 2 }, // Automatic, as when typing
  });
  const items = Array.isArray(result) ? result : result?.items;
  assert.ok(items && items.length > 0, `no inline completion: ${JSON.stringify(result)}`);
  const item = items[0];
  const text = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
  const line = '    total = apply_' + text;
  assert.ok(line.includes('apply_discount('), `completed line: ${JSON.stringify(line)}`);
  assert.deepEqual(item.range, { start: CURSOR, end: CURSOR });
});

test('hover explains the symbol and cites its definition in the other file', { timeout: TIMEOUT }, async () => {
  const hover = await request('textDocument/hover', { textDocument: { uri: uri('app/checkout.py') }, position: USE });
  assert.ok(hover && hover.contents, 'a hover');
  assert.equal(hover.contents.kind, 'markdown');
  const markdown = hover.contents.value;
  assert.ok(markdown.includes(`util/pricing.py:${DEF_LINE}`), markdown);
  assert.ok(markdown.includes('def apply_discount(price, percent):'), markdown);
  // What the extension's hover middleware shows: the citation becomes a link to the file and line.
  const linked = linkCitations(markdown, {
    exists: (relative) => fs.existsSync(path.join(root, relative)),
    link: (relative, line) => `${pathToFileURL(path.join(root, relative)).href}#L${line}`,
  });
  const target = `${pathToFileURL(path.join(root, 'util/pricing.py')).href}#L${DEF_LINE}`;
  assert.ok(linked.includes(`[util/pricing.py:${DEF_LINE}](${target})`), linked);
  assert.ok(linked.includes('def apply_discount(price, percent):'), 'code is left alone');
});

test('explain and search commands answer what the extension renders', { timeout: TIMEOUT }, async () => {
  const explained = await command('repolm.explain', [
    { uri: uri('app/checkout.py'), line: USE.line, character: USE.character },
  ]);
  assert.equal(explained.card.location, `util/pricing.py:${DEF_LINE}`);
  const page = explanationMarkdown(explained, explained.card.qualname);
  assert.ok(page.includes(`util/pricing.py:${DEF_LINE}`), page);

  const hits = await command('repolm.search', [{ query: 'apply discount to a price', k: 5 }]);
  assert.ok(isSearchHits(hits) && hits.length > 0, JSON.stringify(hits));
  const best = hits.find((hit) => hit.path === 'util/pricing.py');
  assert.ok(best, JSON.stringify(hits));
  assert.match(hitLabel(best).description, /^util\/pricing\.py:\d+$/);
});

test('an explanation streams into its page while the model writes it', { timeout: TIMEOUT }, async () => {
  // member_total has not been explained yet (a cached answer comes back whole, with nothing to stream).
  const token = 'explain-member-total';
  const texts = [];
  const streamed = connection.onProgress(rpc.WorkDoneProgress.type, token, (value) => {
    if (value.kind === 'report') {
      texts.push(value.message);
    }
  });
  const explained = await command(
    'repolm.explain',
    explainArguments(uri('app/checkout.py'), { line: 10, character: 'def member_'.length }, token),
  );
  streamed.dispose();
  assert.equal(explained.card.qualname, 'app.checkout.member_total');
  assert.ok(texts.length > 0 && texts.at(-1).trim(), JSON.stringify(texts));
  texts.slice(1).forEach((text, i) => assert.ok(text.startsWith(texts[i]), JSON.stringify(texts)));
  assert.ok(streamingMarkdown('member_total', texts.at(-1)).includes(texts.at(-1)));
});

test('turning inline completions off reaches the server through didChangeConfiguration', { timeout: TIMEOUT }, async () => {
  const off = { ...settings, inlineCompletionsEnabled: false };
  await connection.sendNotification('workspace/didChangeConfiguration', { settings: initializationOptions(off) });
  const result = await request('textDocument/inlineCompletion', {
    textDocument: { uri: uri('app/checkout.py') },
    position: CURSOR,
    context: { triggerKind: 1 },
  });
  const items = Array.isArray(result) ? result : result?.items ?? [];
  assert.deepEqual(items, []);
  await connection.sendNotification('workspace/didChangeConfiguration', {
    settings: initializationOptions(settings),
  });
  const warnings = logs.filter((line) => /didChangeConfiguration|unknown setting/.test(line));
  assert.deepEqual(warnings, []);
});
