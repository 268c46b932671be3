import type { AuthCheckerFn } from 'type-graphql';
import { ForbiddenError } from '../errors.js';
import type { Role } from '../modules/users/role.js';
import { type AppContext, requireViewer } from './context.js';

/**
 * Gate of `@Authorized(...roles)`: a viewer is required, and when roles are listed the viewer's
 * role — as loaded from the database for this request — must be one of them.
 */
export const authChecker: AuthCheckerFn<AppContext, Role> = ({ context }, roles) => {
  const viewer = requireViewer(context);
  if (roles.length > 0 && !roles.includes(viewer.user.role)) throw new ForbiddenError();
  return true;
};
