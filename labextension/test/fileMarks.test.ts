import { Signal } from '@lumino/signaling';
import { describe, expect, it } from 'vitest';

import {
  CHANGED_DIR_CLASS,
  CHANGED_FILE_CLASS,
  ChangedFileMarker
} from '../src/fileMarks';

/** A stand-in for Lab's file browser: a listing of item names under a path. */
function fakeBrowser(path: string, names: string[]) {
  const node = document.createElement('div');
  node.innerHTML = names
    .map(
      name =>
        `<li class="jp-DirListing-item"><span class="jp-DirListing-itemText"><span>${name}</span></span></li>`
    )
    .join('');
  const owner = {};
  const model = { path, pathChanged: new Signal<object, void>(owner) };
  return { node, model };
}

const marked = (node: HTMLElement, cls: string) =>
  [...node.querySelectorAll(`.${cls}`)].map(el => el.textContent);

describe('changed files in the file browser', () => {
  it('marks changed files and the folders that hold them', () => {
    const browser = fakeBrowser('ecode-projects/p1', [
      'app.py',
      'README.md',
      'tests',
      'notes.txt'
    ]);
    const marker = new ChangedFileMarker(browser);
    marker.setChanged([
      'ecode-projects/p1/app.py',
      'ecode-projects/p1/tests/test_app.py'
    ]);
    marker.apply();
    expect(marked(browser.node, CHANGED_FILE_CLASS)).toEqual(['app.py']);
    expect(marked(browser.node, CHANGED_DIR_CLASS)).toEqual(['tests']);
    marker.dispose();
    expect(marked(browser.node, CHANGED_FILE_CLASS)).toEqual([]);
  });

  it('marks the project folder one level up, and nothing elsewhere', () => {
    const browser = fakeBrowser('ecode-projects', ['p1', 'p2']);
    const marker = new ChangedFileMarker(browser);
    marker.setChanged(['ecode-projects/p1/app.py']);
    marker.apply();
    expect(marked(browser.node, CHANGED_DIR_CLASS)).toEqual(['p1']);
    browser.model.path = 'elsewhere';
    marker.apply();
    expect(marked(browser.node, CHANGED_DIR_CLASS)).toEqual([]);
    marker.dispose();
  });
});
