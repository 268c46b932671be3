import type { User } from './user.entity.js';

/** The properties of a user that the GraphQL `User` type shows, and nothing else (no hash, no backoff counters). */
export const USER_VIEW_FIELDS = [
  'id',
  'createdAt',
  'email',
  'username',
  'firstName',
  'lastName',
  'role',
  'active',
  'emailVerifiedAt',
  'lastLoginAt',
  'updatedAt',
] as const satisfies ReadonlyArray<keyof User>;

/** The stored data of {@link USER_VIEW_FIELDS}. */
export type UserViewData = Pick<User, (typeof USER_VIEW_FIELDS)[number]>;

/** Anything the GraphQL `User` type resolves from: the entity or a {@link UserView}. */
export type UserFields = UserViewData & { readonly emailVerified: boolean };

/**
 * A user read to be shown rather than changed (the signed-in viewer, the admin listing): plain
 * data outside any unit of work. Reading it costs no entity hydration, which is most of the CPU of
 * `me` and of a listing page otherwise (see BENCHMARKS.md). Changes go through the services, which
 * update the row and re-read the entity.
 */
export class UserView implements UserFields {
  declare id: string;
  declare createdAt: Date;
  declare email: string;
  declare username: string;
  declare firstName: string | null;
  declare lastName: string | null;
  declare role: User['role'];
  declare active: User['active'];
  declare emailVerifiedAt: Date | null;
  declare lastLoginAt: Date | null;
  declare updatedAt: User['updatedAt'];

  constructor(data: UserViewData) {
    for (const field of USER_VIEW_FIELDS) (this as Record<string, unknown>)[field] = data[field];
  }

  get emailVerified(): boolean {
    return this.emailVerifiedAt !== null;
  }
}
