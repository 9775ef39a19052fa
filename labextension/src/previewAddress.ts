/**
 * The Preview tab's address bar. The app's pages are sandboxed (an opaque origin), so the lab
 * cannot read where the frame went after a click inside the app: the bar keeps its own history
 * of the addresses it sent the frame to, and "back" walks that.
 */

/**
 * The app's root: the keyed URL up to and including its `~key/` segment (`…/ecode/apps/@owner/
 * slug/~key/`), or the URL's folder when it has no key. Paths typed in the bar are under it.
 */
export function appRoot(url: string): string {
  const clean = url.split(/[?#]/, 1)[0];
  const key = clean.match(/^(.*\/~[^/]+\/)/);
  if (key) {
    return key[1];
  }
  const m = clean.match(/^(.*\/~[^/]+)$/);
  if (m) {
    return `${m[1]}/`;
  }
  return clean.slice(0, clean.lastIndexOf('/') + 1);
}

/** The path shown in the bar for `url`: what follows the app's root, always with a leading /. */
export function pathInApp(url: string, root: string): string {
  return url.startsWith(root) ? `/${url.slice(root.length)}` : '/';
}

/**
 * The address for a path typed in the bar. A path never leaves the app: `..` above its root,
 * another host or a scheme (`javascript:`) all land on the root.
 */
export function addressFor(root: string, typed: string): string {
  const path = typed.trim().replace(/^\/+/, '');
  const base = new URL(root, window.location.href);
  let target: URL;
  try {
    target = new URL(path, base);
  } catch {
    return root;
  }
  if (
    target.origin !== base.origin ||
    !target.pathname.startsWith(base.pathname)
  ) {
    return root;
  }
  return root + target.href.slice(base.href.length);
}

/** Where the bar has sent the frame, oldest first; the last entry is shown. */
export interface IPreviewHistory {
  entries: readonly string[];
}

export function startHistory(url: string): IPreviewHistory {
  return { entries: [url] };
}

/** Going to the address already shown adds no entry, so back never seems to do nothing. */
export function navigate(
  history: IPreviewHistory,
  url: string
): IPreviewHistory {
  const { entries } = history;
  return entries[entries.length - 1] === url
    ? history
    : { entries: [...entries, url] };
}

export function canGoBack(history: IPreviewHistory): boolean {
  return history.entries.length > 1;
}

export function goBack(history: IPreviewHistory): IPreviewHistory {
  return canGoBack(history)
    ? { entries: history.entries.slice(0, -1) }
    : history;
}

export function current(history: IPreviewHistory): string {
  return history.entries[history.entries.length - 1];
}
