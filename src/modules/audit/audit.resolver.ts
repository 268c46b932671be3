import { Arg, Authorized, Ctx, ID, Int, Query, Resolver } from 'type-graphql';
import type { AppContext } from '../../graphql/context.js';
import { Role } from '../users/role.js';
import { AuditEventConnection } from './audit.types.js';

@Resolver()
export class AuditResolver {
  @Authorized(Role.ADMIN)
  @Query(() => AuditEventConnection, { description: 'Admins only. Security events, newest first.' })
  auditEvents(
    @Arg('first', () => Int, { nullable: true, description: 'Page size (default 20, at most 100).' }) first: number | null,
    @Arg('after', () => String, { nullable: true, description: '`endCursor` of the previous page.' }) after: string | null,
    @Arg('userId', () => ID, { nullable: true, description: 'Only events about this account.' }) userId: string | null,
    @Ctx() ctx: AppContext,
  ): Promise<AuditEventConnection> {
    return ctx.services.audit.list(ctx.em, first, after, userId);
  }
}
