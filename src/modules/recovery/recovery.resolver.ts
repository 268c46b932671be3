import { Arg, Authorized, Ctx, Mutation, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { ChangePasswordInput, ForgotPasswordInput, ResetPasswordInput } from '../sign-in/auth.inputs.js';

/** Password recovery: forgot, reset, and change of a signed-in user's password. */
@Resolver()
export class RecoveryResolver {
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
