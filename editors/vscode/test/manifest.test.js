// Static checks that keep package.json, the extension's code and the server's commands in step.
// Needs `npm run compile` first. Run: node --test test/manifest.test.js

'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const { test } = require('node:test');

const {
  DEFAULT_SETTINGS,
  LANGUAGES,
  changeKind,
  initializationOptions,
  readSettings,
  serverCommand,
} = require('../out/initOptions');
const { citations, linkCitations } = require('../out/citations');

const ROOT = path.join(__dirname, '..');
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const source = fs.readFileSync(path.join(ROOT, 'src', 'extension.ts'), 'utf8');

// vscode-languageclient registers a VS Code command for every command the server offers: contributing
// one of these names as well would fail activation with "command already exists".
const SERVER_COMMANDS = ['repolm.reindex', 'repolm.explain', 'repolm.search'];

test('every contributed command is registered, and none shadows a server command', () => {
  const contributed = manifest.contributes.commands.map((entry) => entry.command);
  const registered = [...source.matchAll(/registerCommand\('([^']+)'/g)].map((match) => match[1]);
  assert.deepEqual([...contributed].sort(), [...registered].sort());
  for (const name of contributed) {
    assert.ok(!SERVER_COMMANDS.includes(name), name);
  }
});

test('the contributed settings are the ones the extension reads, with the same defaults', () => {
  const properties = manifest.contributes.configuration.properties;
  const read = new Map();
  readSettings((key, fallback) => {
    read.set(key, fallback);
    return fallback;
  });
  assert.deepEqual([...read.keys()].map((key) => `repolm.${key}`).sort(), Object.keys(properties).sort());
  for (const [key, fallback] of read) {
    assert.deepEqual(properties[`repolm.${key}`].default, fallback, key);
  }
  assert.equal(DEFAULT_SETTINGS.serverPath, 'repolm');
});

test('marketplace fields and activation on every served language', () => {
  for (const field of ['name', 'displayName', 'description', 'version', 'publisher', 'license', 'icon', 'repository']) {
    assert.ok(manifest[field], field);
  }
  assert.match(manifest.engines.vscode, /^\^1\.\d+\.\d+$/);
  // vsce refuses an @types/vscode newer than engines.vscode.
  const minor = (version) => Number(version.replace(/^[\^~]/, '').split('.')[1]);
  const types = require('@types/vscode/package.json').version;
  assert.ok(minor(manifest.engines.vscode) >= minor(types), `engines ${manifest.engines.vscode}, @types ${types}`);
  for (const file of ['LICENSE', 'README.md', 'CHANGELOG.md', manifest.icon]) {
    assert.ok(fs.existsSync(path.join(ROOT, file)), file);
  }
  const png = fs.readFileSync(path.join(ROOT, manifest.icon));
  assert.equal(png.readUInt32BE(16), 128); // IHDR width
  assert.equal(png.readUInt32BE(20), 128); // IHDR height
  for (const language of LANGUAGES) {
    assert.ok(manifest.activationEvents.includes(`onLanguage:${language}`), language);
  }
});

test('only settings the server knows are sent, and a change is classified', () => {
  const base = { ...DEFAULT_SETTINGS };
  assert.deepEqual(Object.keys(initializationOptions(base).repolm).sort(), ['adapter', 'completion', 'model']);
  assert.equal(changeKind(base, { ...base, debounceMs: 10 }), 'none');
  assert.equal(changeKind(base, { ...base, adapter: '/a' }), 'notify');
  assert.equal(changeKind(base, { ...base, inlineCompletionsEnabled: false }), 'notify');
  assert.equal(changeKind(base, { ...base, serverPath: '/venv/bin/repolm' }), 'restart');
});

test('serverPath expands ~ and ${workspaceFolder}', () => {
  const where = { home: '/home/me', workspaceFolder: '/work/repo' };
  const at = (serverPath) => serverCommand({ ...DEFAULT_SETTINGS, serverPath }, where);
  assert.deepEqual(at('repolm'), { command: 'repolm', args: ['serve'] });
  assert.equal(at('~/venv/bin/repolm').command, '/home/me/venv/bin/repolm');
  assert.equal(at('${workspaceFolder}/.venv/bin/repolm').command, '/work/repo/.venv/bin/repolm');
});

test('citations become links outside code only, and only for files that exist', () => {
  const target = {
    exists: (file) => file === 'util/pricing.py',
    link: (file, line) => `file:///r/${file}#L${line}`,
  };
  const text = 'Defined at util/pricing.py:4 and `util/pricing.py:4`, not nope.py:3.\n```\nutil/pricing.py:9\n```';
  const linked = linkCitations(text, target);
  assert.ok(linked.startsWith('Defined at [util/pricing.py:4](file:///r/util/pricing.py#L4) and `util/pricing.py:4`'));
  assert.ok(linked.includes('not nope.py:3.'));
  assert.ok(linked.endsWith('```\nutil/pricing.py:9\n```'));
  assert.equal(linkCitations(linked, target), linked, 'links are not linked twice');
  assert.deepEqual(citations('see a/b.py:3, a/b.py:3 and c.ts:10-12'), [
    { path: 'a/b.py', line: 3 },
    { path: 'c.ts', line: 10 },
  ]);
});

test('the compiled extension loads and exports activate/deactivate', () => {
  // A stand-in for the `vscode` module, which only exists inside the editor: any property is a function
  // that returns another stand-in, so module-level code of the extension and its libraries can run.
  const stub = () =>
    new Proxy(function () {}, {
      get: (target, key) => (key === Symbol.toPrimitive ? () => '' : key === 'then' ? undefined : stub()),
      apply: () => stub(),
      construct: () => stub(),
    });
  const load = Module._load;
  Module._load = function (request, ...rest) {
    return request === 'vscode' ? stub() : load.call(this, request, ...rest);
  };
  try {
    for (const file of ['../out/extension.js']) {
      const extension = require(file);
      assert.equal(typeof extension.activate, 'function');
      assert.equal(typeof extension.deactivate, 'function');
    }
  } finally {
    Module._load = load;
  }
});
