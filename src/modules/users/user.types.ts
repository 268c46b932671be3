import { Field, Int, ObjectType } from 'type-graphql';
import { PageInfo } from '../../graphql/pagination.js';
import { User } from './user.entity.js';
import type { UserView } from './user.view.js';

@ObjectType({ simpleResolvers: true, description: 'A user in a page of `users`.' })
export class UserEdge {
  @Field(() => String, { description: 'Position of this user; pass it as `after` to continue behind it.' })
  cursor!: string;

  @Field(() => User, { description: 'The user.' })
  node!: UserView;
}

@ObjectType({ simpleResolvers: true, description: 'A page of users, newest first.' })
export class UserConnection {
  @Field(() => [UserEdge], { description: 'The users of this page.' })
  edges!: UserEdge[];

  @Field(() => PageInfo, { description: 'Cursors and whether more pages follow.' })
  pageInfo!: PageInfo;

  @Field(() => Int, { description: 'How many users match the filter, over all pages.' })
  totalCount!: number;
}
