/**
 * What a stored message body is bound to (DESIGN "Storage"; audit 10, F3). AES-256-GCM
 * authenticates, beside the ciphertext, additional data (AAD, NIST SP 800-38D §7): a body
 * opens only under the same AAD it was sealed with. Bodies are bound to their row's
 * identity and context, so someone who can write to the database but has no key cannot
 * pass a body off as another message, another sender's, another conversation's (where a
 * third user would read it decrypted), or undo an edit while the row says it was edited:
 *
 *   `["m2", id, conversationId, senderId, recipientId or "", groupId or "", editedAt ms or 0]`
 *
 * (JSON: unambiguous whatever the ids hold). Rows sealed before this binding carry the
 * message id alone as AAD; they still open ({@link openBody}), bound only to their id.
 * A full rollback of a row to an earlier state (body, `is_edited` and `edited_at`
 * together) is a replay no AAD can detect.
 */
import { TamperedError, type BodyCipher, type Sealed } from '../crypto/cipher.ts';

/** The fields of a message a body is bound to (a MessageRecord, or the row about to be inserted). */
export interface BodyContext {
  id: string;
  conversationId: string;
  senderId: string;
  recipientId: string | null;
  groupId: string | null;
}

/** Version tag of {@link bodyAad}'s layout. */
const AAD_VERSION = 'm2';

/**
 * The AAD of a body: see the module comment.
 * @param m the message's identity and context (ids as stored: text)
 * @param editedAt the row's `edited_at` (null before any edit)
 * @returns the AAD string (UTF-8 when sealed)
 */
export function bodyAad(m: BodyContext, editedAt: Date | null): string {
  return JSON.stringify([AAD_VERSION, m.id, m.conversationId, m.senderId, m.recipientId ?? '', m.groupId ?? '', editedAt ? editedAt.getTime() : 0]);
}

/**
 * Seal `content` for message `m` with the primary key.
 * @param editedAt the `edited_at` the row will hold (null for a new message); must be stored as given (ms)
 * @returns the sealed body
 */
export function sealBody(cipher: BodyCipher, m: BodyContext, content: string, editedAt: Date | null): Sealed {
  return cipher.seal(content, bodyAad(m, editedAt));
}

/**
 * Open the body of message `m`: under its context ({@link bodyAad}), else as a row sealed
 * before the binding (AAD = the id alone).
 * @returns the plaintext
 * @throws TamperedError when neither opens (altered, moved, its key not configured)
 */
export function openBody(cipher: BodyCipher, sealed: Sealed, m: BodyContext, editedAt: Date | null): string {
  try {
    return cipher.open(sealed, bodyAad(m, editedAt));
  } catch (err) {
    if (!(err instanceof TamperedError)) throw err;
    return cipher.open(sealed, m.id);
  }
}
