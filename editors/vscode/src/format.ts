/**
 * Plain-text shapes of the server's command answers (no `vscode` import; the Node test uses these).
 */

/** One hit of `repolm.search` (the `search --json` contract in the README). */
export interface SearchHit {
  path: string;
  start_line: number;
  end_line: number;
  symbol: string;
  kind: string;
  language?: string;
  score: number;
}

/** The answer of `repolm.explain` (repolm/assist/explain.py `Explanation.to_json`, or a "not found" answer). */
export interface ExplainResult {
  card: null | {
    qualname: string;
    kind: string;
    signature: string;
    docstring: string;
    location: string;
    callers: string[];
    callees: string[];
  };
  card_markdown?: string;
  explanation: string;
  sources?: string[];
  dropped_quotes?: string[];
  dropped_citations?: string[];
}

export function isSearchHits(value: unknown): value is SearchHit[] {
  return (
    Array.isArray(value) &&
    value.every(
      (hit) =>
        typeof hit === 'object' &&
        hit !== null &&
        typeof hit.path === 'string' &&
        typeof hit.start_line === 'number',
    )
  );
}

/** The explanation as one markdown page: the symbol card, then the model's grounded text. */
export function explanationMarkdown(result: ExplainResult, title: string): string {
  const parts = [`# ${title}`];
  if (result.card === null) {
    parts.push(result.explanation || 'Nothing to explain here.');
    return parts.join('\n\n') + '\n';
  }
  parts.push(result.card_markdown || `\`${result.card.qualname}\` — ${result.card.location}`);
  if (result.explanation) {
    parts.push('---', result.explanation);
  }
  if (result.sources && result.sources.length > 0) {
    parts.push('Sources: ' + result.sources.map((source) => source.replace(/-\d+$/, '')).join(', '));
  }
  return parts.join('\n\n') + '\n';
}

/**
 * The `repolm.explain` arguments for a position: with `workDoneToken`, the server streams the text as it is
 * written, each `$/progress` report's message holding the text so far.
 */
export function explainArguments(
  uri: string,
  position: { line: number; character: number },
  workDoneToken: string,
): unknown[] {
  return [{ uri, line: position.line, character: position.character, workDoneToken }];
}

/** The explanation page while the model writes it: the text so far, not yet checked against its sources. */
export function streamingMarkdown(title: string, text: string): string {
  return `# ${title}

${text.trim() ? `${text} …` : '*Explaining…*'}
`;
}

/** A search hit for a quick pick: label, description, detail. */
export function hitLabel(hit: SearchHit): { label: string; description: string; detail: string } {
  const name = hit.symbol || hit.path.split('/').pop() || hit.path;
  return {
    label: name,
    description: `${hit.path}:${hit.start_line}`,
    detail: `${hit.kind || 'chunk'} · lines ${hit.start_line}–${hit.end_line} · score ${hit.score.toFixed(3)}`,
  };
}

/** `repolm status --json` (indexer/status.py) plus the client's view, as markdown. */
export function statusMarkdown(
  server: { state: string; progress: string; model: string; adapter: string; inline: boolean },
  index: Record<string, unknown> | null,
  indexError: string,
): string {
  const lines = ['# repolm status', '', '## Server', ''];
  lines.push(`- state: ${server.state}${server.progress ? ` (${server.progress})` : ''}`);
  lines.push(`- model: ${server.model || 'embedded default (SmolLM2-135M)'}`);
  lines.push(`- adapter: ${server.adapter || 'none'}`);
  lines.push(`- inline completions: ${server.inline ? 'on' : 'off'}`);
  lines.push('', '## Index', '');
  if (index === null) {
    lines.push(indexError || 'No index yet.');
  } else {
    for (const key of ['root', 'index_dir', 'generation', 'files', 'chunks', 'redactions', 'index_bytes']) {
      if (key in index) {
        lines.push(`- ${key}: ${String(index[key])}`);
      }
    }
    const languages = index.languages as Record<string, number> | undefined;
    if (languages && Object.keys(languages).length > 0) {
      lines.push(`- languages: ${Object.entries(languages).map(([name, n]) => `${name} ${n}`).join(', ')}`);
    }
    const skipped = index.skipped as Record<string, number> | undefined;
    if (skipped && Object.keys(skipped).length > 0) {
      lines.push(`- skipped: ${Object.entries(skipped).map(([why, n]) => `${why} ${n}`).join(', ')}`);
    }
    // What is broken in the index's stores, each with the command that fixes it.
    const problems = index.problems as string[] | undefined;
    if (problems && problems.length > 0) {
      lines.push('', '**Problems**', '', ...problems.map((problem) => `- ${problem}`));
    }
  }
  return lines.join('\n') + '\n';
}
