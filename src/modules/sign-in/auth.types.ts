import { Field, ID, ObjectType } from 'type-graphql';
import { User } from '../users/user.entity.js';
import type { Session } from '../sessions/session.entity.js';

@ObjectType({ simpleResolvers: true, description: 'Tokens of a new or refreshed session, and its user.' })
export class AuthPayload {
  @Field(() => String, { description: 'Send as `Authorization: Bearer <accessToken>`; valid for ACCESS_TOKEN_TTL (15 minutes by default). Keep it in memory.' })
  accessToken!: string;

  @Field(() => Date, { description: 'When the access token expires.' })
  accessTokenExpiresAt!: Date;

  @Field(() => String, {
    description:
      'Exchange it with `refreshToken` for new tokens; valid for REFRESH_TOKEN_TTL (30 days by default) and single use (after REFRESH_TOKEN_REUSE_INTERVAL). Empty when the request asked for the refresh-token cookie (`Refresh-Token-Transport: cookie`): the token is then only in that HttpOnly cookie.',
  })
  refreshToken!: string;

  @Field(() => Date, { description: 'When the refresh token (and the device session, unless refreshed) expires.' })
  refreshTokenExpiresAt!: Date;

  @Field(() => String, {
    description: 'Stable for this user on this device: keep it (it is not a credential by itself) and send it with later logins (`LoginInput.deviceToken`).',
  })
  deviceToken!: string;

  @Field(() => User, { description: 'The signed-in user.' })
  user!: User;
}

@ObjectType('Session', { simpleResolvers: true, description: 'A signed-in device.' })
export class SessionInfo {
  @Field(() => ID, { description: 'Identifies the device session; stays the same across token refreshes.' })
  id!: string;

  @Field(() => Date, { description: 'When the device signed in.' })
  createdAt!: Date;

  @Field(() => Date, { nullable: true, description: 'When the device last signed in or refreshed its tokens.' })
  lastUsedAt!: Date | null;

  @Field(() => Date, { description: 'When the session ends unless its tokens are refreshed.' })
  expiresAt!: Date;

  @Field(() => String, { nullable: true, description: 'User-Agent header of the last sign-in or refresh.' })
  userAgent!: string | null;

  @Field(() => String, { nullable: true, description: 'Client IP address of the last sign-in or refresh.' })
  ip!: string | null;

  @Field(() => Boolean, { description: 'True for the session that the calling access token belongs to.' })
  current!: boolean;

  /** Presents a session row; its device session (family) is what clients see as the session. */
  static from(session: Session, currentFamily: string): SessionInfo {
    return Object.assign(new SessionInfo(), {
      id: session.family,
      createdAt: session.createdAt,
      lastUsedAt: session.lastUsedAt,
      expiresAt: session.expiresAt,
      userAgent: session.userAgent,
      ip: session.ip,
      current: session.family === currentFamily,
    });
  }
}
