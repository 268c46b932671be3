import { Arg, Authorized, Ctx, Mutation, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { User } from '../users/user.entity.js';
import type { UserView } from '../users/user.view.js';

/** Changing the account's email address. */
@Resolver()
export class EmailChangeResolver {
  @Authorized()
  @Mutation(() => Boolean, { description: 'Emails a 6-digit code to the new address and a notice to the current one. Always true after the password check.' })
  requestEmailChange(
    @Arg('newEmail', () => String, { description: 'The address to change to.' }) newEmail: string,
    @Arg('password', () => String, { description: 'The account\'s current password.' }) password: string,
    @Arg('code', () => String, { nullable: true, description: 'A TOTP or recovery code, required when MFA is on.' }) code: string | null,
    @Ctx() ctx: AppContext,
  ): Promise<boolean> {
    return ctx.services.emailChange.request(ctx.em, requireViewer(ctx), newEmail, password, code ?? null, ctx.meta);
  }

  @Authorized()
  @Mutation(() => User, { description: 'Switches to the new address with the code mailed to it (15 minutes, 5 tries); it is then verified, and other sessions end.' })
  confirmEmailChange(@Arg('code', () => String, { description: 'The 6-digit code from the email to the new address.' }) code: string, @Ctx() ctx: AppContext): Promise<UserView> {
    return ctx.services.emailChange.confirm(ctx.em, requireViewer(ctx), code, ctx.meta);
  }
}
