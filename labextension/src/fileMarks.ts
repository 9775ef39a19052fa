/**
 * Marks the files the agent changed in Lab's file browser (a dot after the name; folders
 * holding changed files get a lighter one).
 *
 * The file browser has no API to decorate items, so this watches its listing (a
 * MutationObserver on the item names, plus its path signal) and sets classes on the item
 * nodes after each change, once per frame. Only classes are touched — the listing's own
 * text, titles and handlers stay as Lab made them — and only childList/characterData
 * mutations are observed, so setting a class does not trigger another pass.
 */
import { IDisposable } from '@lumino/disposable';

/** The part of Lab's FileBrowser this needs. */
export interface IBrowserLike {
  node: HTMLElement;
  model: {
    path: string;
    pathChanged: {
      connect(fn: () => void): unknown;
      disconnect(fn: () => void): unknown;
    };
  };
}

export const CHANGED_FILE_CLASS = 'jp-EcodeChangedFile-mark';
export const CHANGED_DIR_CLASS = 'jp-EcodeChangedDir-mark';

/** A browser path (maybe `drive:/a/b` or `/a/b`) as a plain root-relative path. */
function normalize(path: string): string {
  const local = path.includes(':') ? path.slice(path.indexOf(':') + 1) : path;
  return local.replace(/^\/+|\/+$/g, '');
}

export class ChangedFileMarker implements IDisposable {
  constructor(private readonly _browser: IBrowserLike) {
    this._observer = new MutationObserver(() => this._schedule());
    this._observer.observe(_browser.node, {
      childList: true,
      subtree: true,
      characterData: true
    });
    this._onPath = () => this._schedule();
    _browser.model.pathChanged.connect(this._onPath);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** The changed files, as paths relative to the server root. */
  setChanged(paths: Iterable<string>): void {
    const files = new Set<string>();
    const dirs = new Set<string>();
    for (const raw of paths) {
      const path = normalize(raw);
      files.add(path);
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        dirs.add(parts.slice(0, i).join('/'));
      }
    }
    this._files = files;
    this._dirs = dirs;
    this._schedule();
  }

  /** Mark the items now (tests; normally once per frame after a change). */
  apply(): void {
    this._frame = null;
    const dir = normalize(this._browser.model.path);
    const items = this._browser.node.querySelectorAll<HTMLElement>(
      '.jp-DirListing-item'
    );
    items.forEach(item => {
      const name = item
        .querySelector('.jp-DirListing-itemText')
        ?.textContent?.trim();
      const path = name ? (dir ? `${dir}/${name}` : name) : '';
      item.classList.toggle(
        CHANGED_FILE_CLASS,
        !!path && this._files.has(path)
      );
      item.classList.toggle(CHANGED_DIR_CLASS, !!path && this._dirs.has(path));
    });
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._observer.disconnect();
    this._browser.model.pathChanged.disconnect(this._onPath);
    if (this._frame !== null) {
      cancelAnimationFrame(this._frame);
    }
    this._files = new Set();
    this._dirs = new Set();
    this.apply();
  }

  private _schedule(): void {
    if (this._frame === null && !this._disposed) {
      this._frame = requestAnimationFrame(() => this.apply());
    }
  }

  private readonly _observer: MutationObserver;
  private readonly _onPath: () => void;
  private _files = new Set<string>();
  private _dirs = new Set<string>();
  private _frame: number | null = null;
  private _disposed = false;
}
