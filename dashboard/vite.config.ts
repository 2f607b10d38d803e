// Vite builds the dashboard into dist/ (served by monitoring's `static_dir`, or by the gateway of
// `edgewatch up`). `npm run dev` proxies the API and Socket.IO to EDGEWATCH_BASE_URL (a running
// gateway, e.g. the one scripts/dev-stack.sh prints) so the page sees one origin, as in production.
import { defineConfig } from 'vite';

const backend = process.env.EDGEWATCH_BASE_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  base: './',
  build: { outDir: 'dist', target: 'es2022', sourcemap: false },
  server: {
    proxy: {
      '/api': { target: backend, changeOrigin: true },
      '/socket.io': { target: backend, ws: true, changeOrigin: true },
    },
  },
});
