import { Arg, Authorized, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { Role } from './role.js';
import { User } from './user.entity.js';
import { CreateUserInput, UpdateProfileInput, UpdateUserInput, UserFilter } from './user.inputs.js';
import { UserConnection } from './user.types.js';
import type { UserView } from './user.view.js';

@Resolver(() => User)
export class UserResolver {
  // A field resolver rather than a getter on the entity: type-graphql turns a parent that is not an
  // instance of the class (a UserView) into a new entity before calling a getter, on every user.
  @FieldResolver(() => Boolean, { description: 'Whether the account has proven it owns its email address.' })
  emailVerified(@Root() user: UserView): boolean {
    return user.emailVerifiedAt !== null;
  }

  @FieldResolver(() => Boolean, { description: 'True once a TOTP authenticator is confirmed; sign-in then needs a code.' })
  mfaEnabled(@Root() user: UserView): boolean {
    return user.mfaEnabledAt !== null;
  }

  @Authorized()
  @Query(() => User, { description: 'The signed-in user. UNAUTHENTICATED without a valid access token.' })
  me(@Ctx() ctx: AppContext): UserView {
    return requireViewer(ctx).user;
  }

  @Authorized()
  @Query(() => User, { nullable: true, description: 'Admins: any user; others: only themselves (FORBIDDEN otherwise). Null when no such user.' })
  user(@Arg('id', () => ID, { description: 'The user\'s id.' }) id: string, @Ctx() ctx: AppContext): Promise<UserView | null> {
    return ctx.services.profile.visible(ctx.em, requireViewer(ctx), { id });
  }

  @Authorized()
  @Query(() => User, { nullable: true, description: 'Admins: any user; others: only themselves (FORBIDDEN otherwise). Null when no such user.' })
  userByUsername(@Arg('username', () => String, { description: 'The username, in any letter case.' }) username: string, @Ctx() ctx: AppContext): Promise<UserView | null> {
    return ctx.services.profile.visible(ctx.em, requireViewer(ctx), { username });
  }

  @Authorized(Role.ADMIN)
  @Query(() => UserConnection, { description: 'Admins only. Relay cursor pagination, newest first; first is capped at 100.' })
  users(
    @Arg('first', () => Int, { nullable: true, description: 'Page size (default 20, at most 100).' }) first: number | null,
    @Arg('after', () => String, { nullable: true, description: '`endCursor` of the previous page.' }) after: string | null,
    @Arg('filter', () => UserFilter, { nullable: true, description: 'Conditions every listed user meets.' }) filter: UserFilter | null,
    @Ctx() ctx: AppContext,
  ): Promise<UserConnection> {
    return ctx.services.userAdmin.list(ctx.em, first, after, filter ?? {});
  }

  @Authorized()
  @Mutation(() => User, { description: 'Changes the signed-in user\'s username and names.' })
  updateMe(@Arg('input', () => UpdateProfileInput, { description: 'The fields to change.' }) input: UpdateProfileInput, @Ctx() ctx: AppContext): Promise<UserView> {
    return ctx.services.profile.update(ctx.em, requireViewer(ctx), input, ctx.meta);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Deletes the signed-in user\'s account, its sessions and tokens, after checking the password (and, when MFA is on, a code).' })
  deleteMe(
    @Arg('password', () => String, { description: 'The account\'s current password.' }) password: string,
    @Arg('code', () => String, { nullable: true, description: 'A TOTP or recovery code, required when MFA is on.' }) code: string | null,
    @Ctx() ctx: AppContext,
  ): Promise<boolean> {
    return ctx.services.profile.deleteSelf(ctx.em, requireViewer(ctx), password, code ?? null, ctx.meta);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => User, { description: 'Admins only.' })
  createUser(@Arg('input', () => CreateUserInput, { description: 'The new account.' }) input: CreateUserInput, @Ctx() ctx: AppContext): Promise<User> {
    const { role, active, ...rest } = input;
    return ctx.services.userAdmin.create(ctx.em, requireViewer(ctx).user.id, { ...rest, role: role ?? undefined, active: active ?? undefined }, ctx.meta);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => User, { description: 'Admins only.' })
  updateUser(
    @Arg('id', () => ID, { description: 'The account to change.' }) id: string,
    @Arg('input', () => UpdateUserInput, { description: 'The fields to change.' }) input: UpdateUserInput,
    @Ctx() ctx: AppContext,
  ): Promise<User> {
    return ctx.services.userAdmin.update(ctx.em, requireViewer(ctx).user.id, id, input, ctx.meta);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, { description: 'Admins only.' })
  deleteUser(@Arg('id', () => ID, { description: 'The account to delete.' }) id: string, @Ctx() ctx: AppContext): Promise<boolean> {
    return ctx.services.userAdmin.delete(ctx.em, requireViewer(ctx).user.id, id, ctx.meta);
  }
}
