// Unit tests of the frontend's pure parts and React views (jsdom), run by `jlpm test`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,tsx}'],
    environment: 'jsdom',
    // Lab's packages ship ES modules with CSS side imports; let vite transform them.
    server: { deps: { inline: [/@jupyterlab\//, /@lumino\//] } },
    css: false
  },
  esbuild: { jsx: 'transform' }
});
