/**
 * Turns the server's `relative/path.py:LINE` citations into markdown links that open the file at the line.
 * No `vscode` import, so the Node test can check it.
 */

// Same shape as repolm/assist/explain.py's _CITATION: a relative path with an extension, a colon, a line.
const CITATION = /(?<![\w/.\-])((?:[\w.\-]+\/)*[\w.\-]+\.\w+):(\d+)(?:-(\d+))?(?!\w)/g;
// Code the citation must not be rewritten in: fenced blocks, inline code, existing links.
const PROTECTED = /```[\s\S]*?(?:```|$)|`[^`\n]*`|\[[^\]\n]*\]\([^)\n]*\)/g;

export interface CitationTarget {
  /** Whether the repository-relative path names a file (citations of other text stay plain). */
  exists(path: string): boolean;
  /** The link for a path and a 1-based line. */
  link(path: string, line: number): string;
}

function linkPlain(text: string, target: CitationTarget): string {
  return text.replace(CITATION, (whole: string, path: string, line: string) => {
    if (path.startsWith('/') || path.includes('..') || !target.exists(path)) {
      return whole;
    }
    return `[${whole}](${target.link(path, Number(line))})`;
  });
}

/** `markdown` with every citation of an existing file outside code turned into a link. */
export function linkCitations(markdown: string, target: CitationTarget): string {
  let out = '';
  let last = 0;
  for (const match of markdown.matchAll(PROTECTED)) {
    const start = match.index ?? 0;
    out += linkPlain(markdown.slice(last, start), target) + match[0];
    last = start + match[0].length;
  }
  return out + linkPlain(markdown.slice(last), target);
}

/** Every `path:line` cited in a text, in order, without duplicates. */
export function citations(text: string): { path: string; line: number }[] {
  const seen = new Set<string>();
  const found: { path: string; line: number }[] = [];
  for (const match of text.matchAll(CITATION)) {
    const key = `${match[1]}:${match[2]}`;
    if (!seen.has(key)) {
      seen.add(key);
      found.push({ path: match[1], line: Number(match[2]) });
    }
  }
  return found;
}
