import { Arg, Authorized, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { LoginInput, RegisterInput } from './auth.inputs.js';
import { AuthPayload, SessionInfo } from './auth.types.js';

@Resolver()
export class AuthResolver {
  @Mutation(() => AuthPayload, { description: 'Creates a USER account, sends a verification code by email, and signs it in.' })
  register(@Arg('input', () => RegisterInput, { description: 'The new account.' }) input: RegisterInput, @Ctx() ctx: AppContext): Promise<AuthPayload> {
    return ctx.services.auth.register(ctx.em, input, ctx.meta);
  }

  @Mutation(() => AuthPayload, { description: 'Signs in with an email address or username and a password.' })
  login(@Arg('input', () => LoginInput, { description: 'Identifier and password.' }) input: LoginInput, @Ctx() ctx: AppContext): Promise<AuthPayload> {
    return ctx.services.auth.login(ctx.em, input, ctx.meta);
  }

  @Mutation(() => AuthPayload, {
    description: 'Rotates a refresh token: the old one stops working; reusing it revokes the whole session.',
  })
  refreshToken(
    @Arg('refreshToken', () => String, { description: 'The refresh token of the last AuthPayload.' }) refreshToken: string,
    @Ctx() ctx: AppContext,
  ): Promise<AuthPayload> {
    return ctx.services.auth.refresh(ctx.em, refreshToken, ctx.meta);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Ends the session of the calling access token.' })
  logout(@Ctx() ctx: AppContext): Promise<boolean> {
    return ctx.services.auth.logout(ctx.em, requireViewer(ctx), ctx.meta);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Ends every session of the caller.' })
  logoutAll(@Ctx() ctx: AppContext): Promise<boolean> {
    return ctx.services.auth.logoutAll(ctx.em, requireViewer(ctx), ctx.meta);
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
