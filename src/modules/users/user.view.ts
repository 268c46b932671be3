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
  'mfaEnabledAt',
] as const satisfies ReadonlyArray<keyof User>;

/**
 * A user read to be shown rather than changed (the signed-in viewer, the admin listing): plain
 * data outside any unit of work, which the GraphQL `User` type resolves from exactly as from the
 * entity. Reading it costs no entity hydration, which was most of the CPU of `me` and of a listing
 * page (see BENCHMARKS.md). Changes go through the services, which update the row and re-read it.
 */
export type UserView = Pick<User, (typeof USER_VIEW_FIELDS)[number]>;

/** The {@link UserView} of a mapped row or an entity: only the shown properties. */
export function userView(data: UserView): UserView {
  return {
    id: data.id,
    createdAt: data.createdAt,
    email: data.email,
    username: data.username,
    firstName: data.firstName,
    lastName: data.lastName,
    role: data.role,
    active: data.active,
    emailVerifiedAt: data.emailVerifiedAt,
    lastLoginAt: data.lastLoginAt,
    updatedAt: data.updatedAt,
    mfaEnabledAt: data.mfaEnabledAt,
  };
}
