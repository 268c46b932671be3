import { Authorized, Ctx, Query, Resolver } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { User } from './user.entity.js';

@Resolver(() => User)
export class UserResolver {
  @Authorized()
  @Query(() => User, { description: 'The signed-in user. UNAUTHENTICATED without a valid access token.' })
  me(@Ctx() ctx: AppContext): User {
    return requireViewer(ctx).user;
  }
}
