import { Arg, Authorized, Ctx, ID, Mutation, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { Role } from '../users/role.js';
import { User } from '../users/user.entity.js';
import type { UserView } from '../users/user.view.js';
import { TotpEnrollment } from './mfa.types.js';

const CODE = { description: 'A 6-digit code from the authenticator app, or a recovery code.' };

/** TOTP two-factor sign-in: enrollment, recovery codes, turning it off. (verifyMfa is with the sign-in operations.) */
@Resolver()
export class MfaResolver {
  @Authorized()
  @Mutation(() => TotpEnrollment, { description: 'Starts TOTP enrollment; nothing changes until confirmTotpEnrollment.' })
  startTotpEnrollment(@Arg('password', () => String, { description: 'The account\'s current password.' }) password: string, @Ctx() ctx: AppContext): Promise<TotpEnrollment> {
    return ctx.services.mfa.startEnrollment(ctx.em, requireViewer(ctx), password, ctx.meta);
  }

  @Authorized()
  @Mutation(() => [String], { description: 'Turns MFA on with a current code; returns 10 single-use recovery codes, shown once.' })
  confirmTotpEnrollment(@Arg('code', () => String, { description: 'A current 6-digit code from the authenticator app.' }) code: string, @Ctx() ctx: AppContext): Promise<string[]> {
    return ctx.services.mfa.confirmEnrollment(ctx.em, requireViewer(ctx), code, ctx.meta);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Turns MFA off, after the password and a code.' })
  disableTotp(
    @Arg('password', () => String, { description: 'The account\'s current password.' }) password: string,
    @Arg('code', () => String, CODE) code: string,
    @Ctx() ctx: AppContext,
  ): Promise<boolean> {
    return ctx.services.mfa.disable(ctx.em, requireViewer(ctx), password, code, ctx.meta);
  }

  @Authorized()
  @Mutation(() => [String], { description: 'Replaces the recovery codes (the old ones stop working), after the password and a code.' })
  regenerateRecoveryCodes(
    @Arg('password', () => String, { description: 'The account\'s current password.' }) password: string,
    @Arg('code', () => String, CODE) code: string,
    @Ctx() ctx: AppContext,
  ): Promise<string[]> {
    return ctx.services.mfa.regenerateRecoveryCodes(ctx.em, requireViewer(ctx), password, code, ctx.meta);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => User, { description: 'Admins only. Turns a user\'s MFA off (lost authenticator); the user is emailed a notice.' })
  disableUserMfa(@Arg('id', () => ID, { description: 'The account.' }) id: string, @Ctx() ctx: AppContext): Promise<UserView> {
    return ctx.services.mfa.disableFor(ctx.em, requireViewer(ctx).user.id, id, ctx.meta);
  }
}
