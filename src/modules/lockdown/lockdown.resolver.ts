import { Arg, Ctx, Mutation, Resolver } from 'type-graphql';
import type { AppContext } from '../../graphql/context.js';

/** "This wasn't me". */
@Resolver()
export class LockdownResolver {
  @Mutation(() => Boolean, {
    description: 'From a "this wasn\'t me" link: ends every session, undoes a recent email change, and requires a password reset.',
  })
  lockAccount(@Arg('token', () => String, { description: 'The token of the link in a security notice.' }) token: string, @Ctx() ctx: AppContext): Promise<boolean> {
    return ctx.services.lockdown.lock(ctx.em, token, ctx.meta);
  }
}
