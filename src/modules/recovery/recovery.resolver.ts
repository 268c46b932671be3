import { Arg, Authorized, Ctx, Mutation, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { User } from '../users/user.entity.js';
import type { UserView } from '../users/user.view.js';
import { ChangePasswordInput, ForgotPasswordInput, ResetPasswordInput } from '../sign-in/auth.inputs.js';

/** Email verification and password recovery. */
@Resolver()
export class RecoveryResolver {
  @Authorized()
  @Mutation(() => Boolean, {
    description: 'Emails a fresh 6-digit verification code (the previous one stops working). At most one per minute; always true.',
  })
  sendVerificationEmail(@Ctx() ctx: AppContext): Promise<boolean> {
    return ctx.services.verification.resend(ctx.em, requireViewer(ctx).user.id, ctx.meta);
  }

  @Authorized()
  @Mutation(() => User, { description: 'Marks the signed-in user\'s email address as verified with the emailed code (15 minutes, 5 tries).' })
  verifyEmail(@Arg('code', () => String, { description: 'The 6-digit code from the email.' }) code: string, @Ctx() ctx: AppContext): Promise<UserView> {
    return ctx.services.verification.verify(ctx.em, requireViewer(ctx).user, code, ctx.meta);
  }

  @Mutation(() => Boolean, { description: 'Always true, whether or not the account exists; emails a single-use reset link when it does.' })
  forgotPassword(
    @Arg('input', () => ForgotPasswordInput, { description: 'Who forgot their password.' }) input: ForgotPasswordInput,
    @Ctx() ctx: AppContext,
  ): Promise<boolean> {
    return ctx.services.recovery.forgotPassword(ctx.em, input.identifier, ctx.meta);
  }

  @Mutation(() => Boolean, { description: 'Sets a new password with an emailed token; ends every session of the account.' })
  resetPassword(
    @Arg('input', () => ResetPasswordInput, { description: 'The token and the new password.' }) input: ResetPasswordInput,
    @Ctx() ctx: AppContext,
  ): Promise<boolean> {
    return ctx.services.recovery.resetPassword(ctx.em, input.token, input.newPassword, input.deviceToken ?? null, ctx.meta);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Ends the caller\'s other sessions; the current one stays signed in.' })
  changePassword(
    @Arg('input', () => ChangePasswordInput, { description: 'The current and the new password.' }) input: ChangePasswordInput,
    @Ctx() ctx: AppContext,
  ): Promise<boolean> {
    return ctx.services.recovery.changePassword(ctx.em, requireViewer(ctx), input.currentPassword, input.newPassword, input.code ?? null, ctx.meta);
  }
}
