/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// The node whose API `npm run dev` proxies to: PARLEY_API=127.0.0.1:7743
// npm run dev for another one. The API refuses a foreign Origin, so the
// proxy presents the node's own origin on every request and WebSocket.
const target = `http://${process.env.PARLEY_API ?? '127.0.0.1:7733'}`;

export default defineConfig({
  // No @vitejs/plugin-react: esbuild compiles TSX with the automatic runtime.
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    // The CSP allows no inline script or style, so nothing is inlined.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/api': {
        target,
        ws: true,
        changeOrigin: true,
        configure: (proxy) => {
          proxy.on('proxyReq', (req) => req.setHeader('origin', target));
          proxy.on('proxyReqWs', (req) => req.setHeader('origin', target));
        },
      },
    },
  },
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
  },
});
