import { describe, expect, it } from 'vitest';

import {
  addressFor,
  appRoot,
  canGoBack,
  current,
  goBack,
  navigate,
  pathInApp,
  startHistory
} from '../src/previewAddress';

const ROOT = '/ecode/apps/@ann/todo/~k3y/';

describe('the preview address bar', () => {
  it('finds the app root in its keyed URL', () => {
    expect(appRoot('/ecode/apps/@ann/todo/~k3y/')).toBe(ROOT);
    expect(appRoot('/ecode/apps/@ann/todo/~k3y/items/4?x=1')).toBe(ROOT);
    expect(appRoot('/ecode/apps/@ann/todo/~k3y')).toBe(ROOT);
    expect(appRoot('https://p.example/ecode/apps/@ann/todo/~k3y/a')).toBe(
      'https://p.example' + ROOT
    );
    // A URL without a key: its folder.
    expect(appRoot('/apps/todo/index.html')).toBe('/apps/todo/');
  });

  it('shows the path within the app', () => {
    expect(pathInApp(ROOT, ROOT)).toBe('/');
    expect(pathInApp(ROOT + 'items?page=2', ROOT)).toBe('/items?page=2');
    expect(pathInApp('/elsewhere', ROOT)).toBe('/');
  });

  it('turns a typed path into an address inside the app', () => {
    expect(addressFor(ROOT, '/items')).toBe(ROOT + 'items');
    expect(addressFor(ROOT, 'items?page=2#top')).toBe(
      ROOT + 'items?page=2#top'
    );
    expect(addressFor(ROOT, '  /docs  ')).toBe(ROOT + 'docs');
    expect(addressFor(ROOT, '')).toBe(ROOT);
    expect(addressFor(ROOT, 'a/../b')).toBe(ROOT + 'b');
  });

  it('never leaves the app, whatever is typed', () => {
    expect(addressFor(ROOT, '../../@bob/secret/')).toBe(ROOT);
    expect(addressFor(ROOT, '/../../../api/contents')).toBe(ROOT);
    expect(addressFor(ROOT, 'https://evil.example/')).toBe(ROOT);
    // A protocol-relative URL is read as a path: it stays in the app.
    expect(addressFor(ROOT, '//evil.example/x')).toBe(ROOT + 'evil.example/x');
    expect(addressFor(ROOT, 'javascript:alert(1)')).toBe(ROOT);
  });

  it('goes back through where the bar sent the frame', () => {
    let h = startHistory(ROOT);
    expect(canGoBack(h)).toBe(false);
    h = navigate(h, ROOT + 'a');
    h = navigate(h, ROOT + 'a');
    h = navigate(h, ROOT + 'b');
    expect(h.entries).toEqual([ROOT, ROOT + 'a', ROOT + 'b']);
    h = goBack(h);
    expect(current(h)).toBe(ROOT + 'a');
    h = goBack(h);
    expect(current(h)).toBe(ROOT);
    expect(canGoBack(h)).toBe(false);
    expect(goBack(h)).toBe(h);
  });
});
