/** The authenticated user of a connection (PROTOCOL §3 `auth_success.user`). */
import type { UserInfo } from '../store/users.ts';

/** Who a connection acts as, and the token that proved it. */
export interface Identity {
  user: UserInfo;
  /** `jti` of the token (null when the token has none). */
  jti: string | null;
  /** `exp` of the token, epoch ms. */
  expiresAtMs: number;
  /** Snapshot xmin at authentication (xid8 text): the sync cursor position of `auth_success`. */
  xmin: string;
  /**
   * When the revocation and user lookup last succeeded for this session (epoch ms, taken
   * when the query was sent): at authentication, then at each successful re-check (§3 item 7).
   */
  checkedAtMs: number;
}
