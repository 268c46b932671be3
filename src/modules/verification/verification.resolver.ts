import { Arg, Authorized, Ctx, Mutation, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { User } from '../users/user.entity.js';
import type { UserView } from '../users/user.view.js';

/** Email verification: a code by email, confirmed by the signed-in user. */
@Resolver()
export class VerificationResolver {
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
}
