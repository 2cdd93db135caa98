// What the UI says when something goes wrong: every error code of the API
// has a plain-words sentence saying what happened and what to do. The
// API's own `message` is meant for developers and is never shown; a code
// this table does not know gets a generic sentence, never the raw text.

import { ApiError, NetworkError } from './api';

/** The longest display name the node takes, in bytes of UTF-8 (protocol.MaxNameSize). */
export const MAX_NAME_BYTES = 64;

/** What the user was doing when the error came: some codes mean something more precise then. */
export type Action =
  | 'register'
  | 'login'
  | 'invite'
  | 'addByID'
  | 'friend'
  | 'search'
  | 'lookup'
  | 'send'
  | 'retry'
  | 'delete'
  | 'load'
  | 'verify';

/** The sentence of each code, whatever the user was doing. */
export const codeSentences: Record<string, string> = {
  bad_request: 'Parley could not use what was typed. Check it and try again.',
  unauthorized: 'Your session ended. Log in again with your passphrase.',
  bad_passphrase: 'Wrong passphrase. Check it and try again.',
  forbidden:
    'Your node refused this page’s request. Open Parley from the address `parley run` printed, not from another site.',
  not_found: 'That is no longer there. It may have been removed; reload the page to see what is left.',
  method_not_allowed: 'This page and your node do not agree on how to do that. Reload the page; if it persists, update Parley.',
  conflict: 'That was already done, or something changed meanwhile. Reload the page and try again.',
  wrong_state: 'Your node is not ready for that yet. Log in (or finish setting up), then try again.',
  key_changed:
    'Their key has changed. Compare safety numbers with them before sending; the message is held until then.',
  too_large: 'That is too long to send. Shorten it and try again.',
  unsupported_media_type: 'This page sent your node something it does not understand. Reload the page and try again.',
  throttled: 'Too many tries in a row. Wait a moment, then try again.',
  unavailable: 'Your node cannot reach the network right now. Check your connection and try again in a moment.',
  internal: 'Something went wrong inside your node. Try again; if it keeps happening, restart `parley run`.',
  // Codes a finer-grained API may give; harmless while it does not.
  invalid_invite: 'This isn’t a Parley invite link — ask your friend to copy it again.',
  name_too_long: `That name is too long: use at most ${MAX_NAME_BYTES} bytes (about ${MAX_NAME_BYTES} letters, fewer with accents or emoji).`,
  unknown_user: 'Nobody with that user ID was found. Check the ID with your friend, or ask for their invite link.',
  not_friend: 'You can only write to friends who accepted your request.',
  bad_invite: 'This isn’t a Parley invite link — ask your friend to copy it again.',
  invite_refused:
    'Your friend’s Parley did not accept this invite link. Ask them for a new one, or add them by their user ID.',
  not_retryable: 'Only a message that failed can be sent again.',
  removed_by_peer: 'This person removed you from their friends, so your messages can’t reach them.',
  not_member: 'You are no longer a member of this group.',
  not_admin: 'Only an admin of the group can do that.',
  empty_text: 'There is nothing to send: type a message first.',
};

/** Sentences for a code while doing one thing; they win over codeSentences. */
const actionSentences: Partial<Record<Action, Record<string, string>>> = {
  invite: {
    bad_request: 'This isn’t a Parley invite link — ask your friend to copy it again.',
    conflict: 'You already have this person on your friend list.',
    not_found: 'This invite link doesn’t lead to anyone. Ask your friend to copy it again.',
  },
  addByID: {
    bad_request:
      'That isn’t a Parley user ID. A user ID is 52 letters and digits; ask your friend to copy it from their Settings.',
    not_found: 'Nobody with that user ID was found. Check the ID with your friend, or ask for their invite link.',
    conflict: 'You already have this person on your friend list.',
    unavailable: 'The directory can’t be reached right now, so the user ID can’t be looked up. Try again in a minute.',
  },
  lookup: {
    not_found: 'Nobody with that user ID was found. Check the ID with your friend, or ask for their invite link.',
  },
  search: {
    bad_request: 'Type a name to search for.',
    unavailable: 'The directory can’t be reached right now. Try again in a minute.',
  },
  register: {
    bad_request: `The name or passphrase was refused: a name is 1 to ${MAX_NAME_BYTES} bytes without line breaks, a passphrase at least 10 characters.`,
    conflict: 'This node already has an identity. Reload the page to log in.',
  },
  login: {
    wrong_state: 'This node has no identity yet. Reload the page to set one up.',
  },
  send: {
    not_found: 'You can only write to friends who accepted your request.',
    bad_request: 'Empty messages can’t be sent. Type something first.',
  },
  retry: {
    not_found: 'That message is gone, so it can’t be sent again.',
    conflict: 'That message is already on its way.',
  },
  delete: {
    not_found: 'That message was already deleted.',
  },
  friend: {
    not_found: 'That person is no longer on your friend list. Reload the page to see who is.',
  },
  verify: {
    conflict: 'Their key changed while you were comparing. Compare the new safety number with them.',
  },
};

/** What to say when the node does not answer at all. */
export const unreachableSentence =
  'Can’t reach your Parley node. Check that `parley run` is still running on this computer; Parley reconnects by itself when it is back.';

/** What to say for a code nobody knows, or an error that is not the API's. */
export const genericSentence = 'Something went wrong. Try again; if it keeps happening, reload the page.';

/** A wait in seconds as words: "45 s", "3 min 5 s". */
export function formatWait(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const r = s % 60;
  return r ? `${m} min ${r} s` : `${m} min`;
}

/** The plain-words sentence for any error a call may throw, for the user doing action. */
export function humanError(e: unknown, action?: Action): string {
  if (e instanceof NetworkError) return unreachableSentence;
  // A fetch that never got an answer, should a caller not wrap it.
  if (e instanceof TypeError && /fetch|network/i.test(e.message)) return unreachableSentence;
  if (!(e instanceof ApiError)) return genericSentence;
  if (e.code === 'throttled' && e.retryAfter) {
    return action === 'login'
      ? `Too many wrong passphrases. Try again in ${formatWait(e.retryAfter)}.`
      : `Too many tries in a row. Try again in ${formatWait(e.retryAfter)}.`;
  }
  if (e.status === 404 && e.code === 'not_found' && /no such API route/i.test(e.message)) {
    return 'Your node does not offer that yet. Update Parley to use it.';
  }
  return (action && actionSentences[action]?.[e.code]) ?? codeSentences[e.code] ?? genericSentence;
}

/** Why a message of mine failed, in plain words, from the node's reason. */
export function failureText(reason: string | undefined): string {
  const r = (reason ?? '').toLowerCase();
  if (r.includes('not-a-friend') || r.includes('not a friend')) {
    return 'Their node refused it: they are no longer friends with you.';
  }
  if (r.includes('friend removed')) return 'Not sent: you removed this friend.';
  if (r.includes('friend blocked')) return 'Not sent: you blocked this person.';
  if (r.includes('key')) return 'Not sent: their key changed. Compare safety numbers, then retry.';
  if (r.includes('expired') || r.includes('timed out') || r.includes('gave up') || r.includes('unreachable')) {
    return 'Their node could not be reached in time. You can retry it.';
  }
  return 'It could not be delivered. You can retry it or delete it.';
}
