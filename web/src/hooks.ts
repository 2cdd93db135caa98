// React hooks over the query cache (cache.ts).

import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, groupApi } from './api';
import { chatCacheFor, keys, type ChatCache } from './cache';

/** The ChatCache of the QueryClient in context. */
export function useChatCache(): ChatCache {
  return chatCacheFor(useQueryClient());
}

export function useMe() {
  return useQuery({ queryKey: keys.me, queryFn: api.me, staleTime: Infinity });
}

export function useFriends() {
  const c = useChatCache();
  return useQuery(c.friendsQuery());
}

export function useConversations() {
  const c = useChatCache();
  return useQuery(c.conversationsQuery());
}

export function useThread(peer: string) {
  const c = useChatCache();
  return useQuery(c.threadQuery(peer));
}

/** The groups, with their unread counts (a group event refetches them). */
export function useGroups() {
  return useQuery({ queryKey: keys.groups, queryFn: groupApi.groups });
}

/** The newest page of a group's messages, newest first as the API gives them. */
export function useGroupMessages(id: string) {
  return useQuery({ queryKey: keys.groupThread(id), queryFn: () => groupApi.messages(id, undefined, 200) });
}
