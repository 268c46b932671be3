import { Arg, Authorized, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { UnauthenticatedError } from '../../errors.js';
import { LoginInput, RegisterInput } from './auth.inputs.js';
import type { SignedIn } from './auth.service.js';
import { AuthPayload, SessionInfo } from './auth.types.js';

/**
 * Runs a sign-in and hands its tokens over the way the request asked: the refresh token in the
 * body (native apps), or only in the HttpOnly cookie (browsers that sent `Refresh-Token-Transport:
 * cookie`; the body's field is then empty).
 */
async function handOver(ctx: AppContext, signIn: () => Promise<SignedIn>): Promise<SignedIn> {
  // Asked before anything is issued: an origin that may not have the cookie gets nothing.
  const inCookie = ctx.refreshCookie.wanted();
  const signedIn = await signIn();
  if (!inCookie) return signedIn;
  ctx.refreshCookie.issue(signedIn.refreshToken, signedIn.refreshTokenExpiresAt);
  return { ...signedIn, refreshToken: '' };
}

/** Ends the caller's device session (and maybe others); in cookie mode the cookie goes with it. */
async function endingDevice(ctx: AppContext, end: () => Promise<boolean>): Promise<boolean> {
  const inCookie = ctx.refreshCookie.wanted();
  const ended = await end();
  if (inCookie) ctx.refreshCookie.clear();
  return ended;
}

@Resolver()
export class AuthResolver {
  @Mutation(() => AuthPayload, { description: 'Creates a USER account, sends a verification code by email, and signs it in.' })
  register(@Arg('input', () => RegisterInput, { description: 'The new account.' }) input: RegisterInput, @Ctx() ctx: AppContext): Promise<AuthPayload> {
    return handOver(ctx, () => ctx.services.auth.register(ctx.em, input, ctx.meta));
  }

  @Mutation(() => AuthPayload, { description: 'Signs in with an email address or username and a password.' })
  login(@Arg('input', () => LoginInput, { description: 'Identifier and password.' }) input: LoginInput, @Ctx() ctx: AppContext): Promise<AuthPayload> {
    return handOver(ctx, () => ctx.services.auth.login(ctx.em, input, ctx.meta));
  }

  @Mutation(() => AuthPayload, { description: 'Finishes a sign-in that answered MFA_REQUIRED. code: a 6-digit TOTP code or a recovery code.' })
  verifyMfa(
    @Arg('mfaToken', () => String, { description: '`extensions.mfaToken` of the MFA_REQUIRED error.' }) mfaToken: string,
    @Arg('code', () => String, { description: 'A 6-digit code from the authenticator app, or a recovery code.' }) code: string,
    @Arg('deviceToken', () => String, { nullable: true, description: 'The deviceToken of an earlier AuthPayload on this device, if any.' }) deviceToken: string | null,
    @Ctx() ctx: AppContext,
  ): Promise<AuthPayload> {
    return handOver(ctx, () => ctx.services.auth.verifyMfa(ctx.em, mfaToken, code, deviceToken, ctx.meta));
  }

  @Mutation(() => AuthPayload, {
    description: 'Rotates a refresh token: the old one stops working (after REFRESH_TOKEN_REUSE_INTERVAL); reusing it later ends the whole device session.',
  })
  refreshToken(
    @Arg('refreshToken', () => String, { description: 'The refresh token of the last AuthPayload; an empty string in cookie mode (`Refresh-Token-Transport: cookie`), where the HttpOnly cookie carries it.' }) refreshToken: string,
    @Ctx() ctx: AppContext,
  ): Promise<AuthPayload> {
    const presented = ctx.refreshCookie.presented() ?? refreshToken;
    return handOver(ctx, () =>
      ctx.services.auth.refresh(ctx.em, presented, ctx.meta).catch((error: unknown) => {
        // A dead refresh token in the cookie is dropped, so the browser stops sending it.
        if (error instanceof UnauthenticatedError && ctx.refreshCookie.wanted()) ctx.refreshCookie.clear();
        throw error;
      }),
    );
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Ends the session of the calling access token.' })
  logout(@Ctx() ctx: AppContext): Promise<boolean> {
    return endingDevice(ctx, () => ctx.services.auth.logout(ctx.em, requireViewer(ctx), ctx.meta));
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Ends every session of the caller.' })
  logoutAll(@Ctx() ctx: AppContext): Promise<boolean> {
    return endingDevice(ctx, () => ctx.services.auth.logoutAll(ctx.em, requireViewer(ctx), ctx.meta));
  }

  @Authorized()
  @Mutation(() => Boolean, {
    description: 'Ends one of the caller\'s sessions (an id from `sessions`). False when the caller has no such active session.',
  })
  revokeSession(
    @Arg('id', () => ID, { description: 'The `id` of one of the caller\'s `sessions`.' }) id: string,
    @Ctx() ctx: AppContext,
  ): Promise<boolean> {
    return ctx.services.auth.revokeSession(ctx.em, requireViewer(ctx), id, ctx.meta);
  }

  @Authorized()
  @Query(() => [SessionInfo], { description: 'The caller\'s active sessions (one per signed-in device).' })
  async sessions(@Ctx() ctx: AppContext): Promise<SessionInfo[]> {
    const viewer = requireViewer(ctx);
    const sessions = await ctx.services.auth.listSessions(ctx.em, viewer);
    return sessions.map((session) => SessionInfo.from(session, viewer.session.family));
  }
}
