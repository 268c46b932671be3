import { Field, Int, ObjectType } from 'type-graphql';
import { PageInfo } from '../../graphql/pagination.js';
import { AuditEvent } from './audit-event.entity.js';

@ObjectType({ simpleResolvers: true, description: 'An event in a page of `auditEvents`.' })
export class AuditEventEdge {
  @Field(() => String, { description: 'Position of this event; pass it as `after` to continue behind it.' })
  cursor!: string;

  @Field(() => AuditEvent, { description: 'The event.' })
  node!: AuditEvent;
}

@ObjectType({ simpleResolvers: true, description: 'A page of security events, newest first.' })
export class AuditEventConnection {
  @Field(() => [AuditEventEdge], { description: 'The events of this page.' })
  edges!: AuditEventEdge[];

  @Field(() => PageInfo, { description: 'Cursors and whether more pages follow.' })
  pageInfo!: PageInfo;

  @Field(() => Int, { description: 'How many events match, over all pages.' })
  totalCount!: number;
}
