import { useEffect, useState } from 'react';

// A small client-side router over the History API (the node serves
// index.html for every path outside /api and /assets).

export type Route =
  | { name: 'chats'; with?: string }
  | { name: 'group'; id: string }
  | { name: 'friends' }
  | { name: 'safety'; userID: string }
  | { name: 'settings' };

export function parseRoute(path: string): Route {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case 'chat':
      return parts[1] ? { name: 'chats', with: parts[1] } : { name: 'chats' };
    case 'group':
      return parts[1] ? { name: 'group', id: parts[1] } : { name: 'chats' };
    case 'friends':
      return { name: 'friends' };
    case 'safety':
      return parts[1] ? { name: 'safety', userID: parts[1] } : { name: 'friends' };
    case 'settings':
      return { name: 'settings' };
    default:
      return { name: 'chats' };
  }
}

export function routePath(r: Route): string {
  switch (r.name) {
    case 'chats':
      return r.with ? `/chat/${encodeURIComponent(r.with)}` : '/';
    case 'group':
      return `/group/${encodeURIComponent(r.id)}`;
    case 'friends':
      return '/friends';
    case 'safety':
      return `/safety/${encodeURIComponent(r.userID)}`;
    case 'settings':
      return '/settings';
  }
}

const listeners = new Set<() => void>();

export function navigate(r: Route | string): void {
  const path = typeof r === 'string' ? r : routePath(r);
  if (path !== location.pathname) history.pushState(null, '', path);
  listeners.forEach((l) => l());
}

export function useRoute(): Route {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    listeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return parseRoute(path);
}
