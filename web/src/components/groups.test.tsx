import { act, cleanup, fireEvent, screen, waitFor, within } from '@testing-library/react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { groupApi, type Friend, type Group, type GroupMessage } from '../api';
import { keys } from '../cache';
import { renderWithQuery, testQueryClient } from '../testutil';
import { GroupConversation, GroupList, memberName, NewGroupDialog, senderColour } from './Groups';

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

const me = { user_id: 'me', name: 'Me', peer_id: 'p', addrs: [], invite: 'parley:card/x', short_invite: 'parley:invite/x', fingerprint: 'f' };
const bob: Friend = { user_id: 'bob', name: 'Bob', status: 'accepted', verified: false, online: false, safety_number: '1' };
const carol: Friend = { ...bob, user_id: 'carol', name: 'Carol' };
const dave: Friend = { ...bob, user_id: 'dave', name: 'Dave' };

function group(over: Partial<Group> = {}): Group {
  return {
    group_id: 'g1',
    name: 'Climbing',
    epoch: 1,
    removed: false,
    unread: 0,
    last_message: null,
    members: [
      { user_id: 'me', name: 'Me', role: 'admin' },
      { user_id: 'bob', name: 'Bob', role: 'member' },
      { user_id: 'carol', name: 'Carol', role: 'member' },
    ],
    ...over,
  };
}

function gm(id: string, over: Partial<GroupMessage> = {}): GroupMessage {
  return {
    msg_id: id, group_id: 'g1', from: 'bob', name: 'Bob', text: `text ${id}`, sent_at: new Date().toISOString(),
    received_at: new Date().toISOString(), direction: 'in', ...over,
  };
}

async function open(g: Group, messages: GroupMessage[]) {
  vi.spyOn(groupApi, 'messages').mockResolvedValue({ messages, next: null });
  vi.spyOn(groupApi, 'markRead').mockResolvedValue(undefined);
  vi.spyOn(groupApi, 'groups').mockResolvedValue([g]);
  let r!: ReturnType<typeof renderWithQuery>;
  await act(async () => {
    r = renderWithQuery(<GroupConversation me={me} group={g} friends={[bob, carol, dave]} />);
  });
  if (messages.length) await screen.findByText(messages[0].text);
  return r;
}

describe('a group conversation', () => {
  it('shows each sender by name, mine without, under day separators, oldest first', async () => {
    const yesterday = new Date(Date.now() - 86_400_000).toISOString();
    await open(group(), [
      gm('m3', { from: 'me', name: 'Me', direction: 'out', text: 'mine' }),
      gm('m2', { from: 'carol', name: 'Carol', text: 'from carol' }),
      gm('m1', { text: 'from bob', sent_at: yesterday }),
    ]);
    const msgs = screen.getAllByTestId('group-message');
    expect(msgs.map((m) => m.querySelector('.text')?.textContent)).toEqual(['from bob', 'from carol', 'mine']);
    expect(screen.getAllByTestId('sender').map((s) => s.textContent)).toEqual(['Bob', 'Carol']);
    expect(screen.getByRole('heading', { name: 'Yesterday' })).toBeTruthy();
    expect(screen.getByRole('heading', { name: 'Today' })).toBeTruthy();
  });

  it('sends with the composer and fetches the messages again', async () => {
    await open(group(), []);
    const send = vi.spyOn(groupApi, 'send').mockResolvedValue({ msg_id: 'x', status: 'sent' });
    fireEvent.change(screen.getByRole('textbox', { name: 'Message' }), { target: { value: 'hello all' } });
    await act(async () => fireEvent.click(screen.getByRole('button', { name: 'Send' })));
    expect(send).toHaveBeenCalledWith('g1', 'hello all');
  });

  it('says "You were removed", keeps the history and disables the composer', async () => {
    await open(group({ removed: true }), [gm('m1', { text: 'before' })]);
    expect(screen.getByTestId('group-removed').textContent).toMatch(/^You were removed from this group\./);
    expect(screen.getByText('before')).toBeTruthy();
    expect((screen.getByRole('textbox', { name: 'Message' }) as HTMLTextAreaElement).disabled).toBe(true);
  });

  it('marks the group read while open', async () => {
    await open(group({ unread: 2 }), [gm('m1')]);
    await waitFor(() => expect(groupApi.markRead).toHaveBeenCalledWith('g1'));
  });
});

describe('members', () => {
  it('an admin sees roles, removes a member and adds a friend', async () => {
    await open(group(), []);
    fireEvent.click(screen.getByRole('button', { name: 'Members' }));
    const list = screen.getByRole('region', { name: 'Members' });
    expect(within(list).getAllByTestId('member').map((m) => m.textContent)).toEqual([
      expect.stringMatching(/^You Admin/),
      expect.stringMatching(/^Bob Member/),
      expect.stringMatching(/^Carol Member/),
    ]);
    const remove = vi.spyOn(groupApi, 'removeMember').mockResolvedValue(undefined);
    await act(async () => fireEvent.click(screen.getByRole('button', { name: 'Remove Carol' })));
    expect(remove).toHaveBeenCalledWith('g1', 'carol');
    const add = vi.spyOn(groupApi, 'addMember').mockResolvedValue(group());
    fireEvent.change(screen.getByRole('combobox'), { target: { value: 'dave' } });
    await act(async () => fireEvent.click(screen.getByRole('button', { name: 'Add' })));
    expect(add).toHaveBeenCalledWith('g1', 'dave');
  });

  it('a member sees no remove or add, and can leave', async () => {
    await open(
      group({
        members: [
          { user_id: 'bob', name: 'Bob', role: 'admin' },
          { user_id: 'me', name: 'Me', role: 'member' },
        ],
      }),
      [],
    );
    fireEvent.click(screen.getByRole('button', { name: 'Members' }));
    expect(screen.queryByRole('button', { name: /^Remove/ })).toBeNull();
    expect(screen.queryByRole('combobox')).toBeNull();
    const remove = vi.spyOn(groupApi, 'removeMember').mockResolvedValue(undefined);
    await act(async () => fireEvent.click(screen.getByRole('button', { name: 'Leave group' })));
    expect(remove).toHaveBeenCalledWith('g1', 'me');
  });
});

describe('the group list', () => {
  it('shows unread counts, the last message, and a removal', () => {
    renderWithQuery(
      <GroupList
        groups={[
          group({ unread: 3, last_message: { msg_id: 'm', text: 'hi', at: new Date().toISOString(), direction: 'in', status: 'delivered' } }),
          group({ group_id: 'g2', name: 'Old', removed: true }),
        ]}
      />,
    );
    const items = screen.getAllByTestId('group-item');
    expect(within(items[0]).getByTestId('group-unread').textContent).toBe('3');
    expect(items[0].textContent).toContain('hi');
    expect(items[1].textContent).toContain('You were removed');
  });

  it('creates a group from chosen friends', async () => {
    const qc = testQueryClient();
    qc.setQueryData(keys.friends, [bob, carol, { ...dave, status: 'pending_out' }]);
    const create = vi.spyOn(groupApi, 'create').mockResolvedValue(group());
    const done = vi.fn();
    renderWithQuery(<NewGroupDialog onDone={done} />, qc);
    expect(screen.queryByLabelText('Dave')).toBeNull(); // not an accepted friend
    fireEvent.change(screen.getByLabelText('Group name'), { target: { value: ' Climbing ' } });
    fireEvent.click(screen.getByLabelText('Bob'));
    fireEvent.click(screen.getByLabelText('Carol'));
    await act(async () => fireEvent.click(screen.getByRole('button', { name: 'Create group' })));
    expect(create).toHaveBeenCalledWith('Climbing', ['bob', 'carol']);
    expect(done).toHaveBeenCalled();
    expect(location.pathname).toBe('/group/g1');
  });
});

describe('helpers', () => {
  it('names members and gives each sender a stable colour', () => {
    expect(memberName({ user_id: 'me', name: 'Me' }, 'me')).toBe('You');
    expect(memberName({ user_id: 'abcdefghijk', name: '' }, 'me')).toBe('abcdefgh…');
    expect(senderColour('bob')).toBe(senderColour('bob'));
    expect(senderColour('bob')).toBeLessThan(8);
  });
});
