import { Field, ObjectType } from 'type-graphql';
import { WebhookEndpoint } from './webhook-endpoint.entity.js';

@ObjectType({ simpleResolvers: true, description: 'An endpoint just registered, with its signing secret.' })
export class CreatedWebhookEndpoint {
  @Field(() => WebhookEndpoint, { description: 'The endpoint.' })
  endpoint!: WebhookEndpoint;

  @Field(() => String, { description: 'Signing secret (Standard Webhooks, whsec_…), shown once.' })
  secret!: string;
}
