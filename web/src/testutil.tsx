// Test helpers: components render inside a QueryClientProvider of a fresh
// client (no retries, so that a failed query shows at once).

import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { chatCacheFor } from './cache';

export function testQueryClient(): QueryClient {
  return new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity }, mutations: { retry: false } } });
}

/** Renders ui with a fresh query client; returns the client and its ChatCache too. */
export function renderWithQuery(ui: ReactElement, qc = testQueryClient()) {
  const r = render(<QueryClientProvider client={qc}>{ui}</QueryClientProvider>);
  return { ...r, qc, cache: chatCacheFor(qc) };
}
