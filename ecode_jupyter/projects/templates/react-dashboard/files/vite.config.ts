import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// base "./": assets are linked relative to the page, so the app works under any URL prefix
// (a preview proxy serves it below /ecode/apps/@owner/slug/).
export default defineConfig({
  base: "./",
  plugins: [react()],
  test: { environment: "node" },
});
