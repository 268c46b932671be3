import { Arg, Authorized, Ctx, FieldResolver, ID, Int, Mutation, Query, Resolver, Root } from 'type-graphql';
import { type AppContext, requireViewer } from '../../graphql/context.js';
import { Role } from '../users/role.js';
import { WebhookDelivery } from './webhook-delivery.entity.js';
import { WebhookEndpoint } from './webhook-endpoint.entity.js';
import type { CreatedEndpoint, DeliveryView } from './webhook.service.js';
import { CreatedWebhookEndpoint } from './webhook.types.js';

@Resolver(() => WebhookEndpoint)
export class WebhookResolver {
  @Authorized(Role.ADMIN)
  @Query(() => [WebhookEndpoint], { description: 'Admins only. Registered webhook endpoints, oldest first.' })
  webhookEndpoints(@Ctx() ctx: AppContext): Promise<WebhookEndpoint[]> {
    return ctx.services.webhooks.list(ctx.em);
  }

  @Authorized(Role.ADMIN)
  @FieldResolver(() => [WebhookDelivery], { description: 'Latest delivery attempts, newest first.' })
  deliveries(
    @Root() endpoint: WebhookEndpoint,
    @Arg('first', () => Int, { nullable: true, description: 'How many (default 20, at most 100).' }) first: number | null,
    @Ctx() ctx: AppContext,
  ): Promise<DeliveryView[]> {
    return ctx.services.webhooks.deliveries(ctx.em, endpoint.id, first);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => CreatedWebhookEndpoint, {
    description: 'Admins only. Registers an endpoint for the listed event types (see the README\'s event catalogue); the secret is shown only here.',
  })
  createWebhookEndpoint(
    @Arg('url', () => String, { description: 'https:// URL events are POSTed to (http:// outside production); it must resolve to public addresses unless its host is in WEBHOOK_ALLOWED_HOSTS.' }) url: string,
    @Arg('events', () => [String], { description: 'Event types, e.g. ["user.created", "user.deleted"].' }) events: string[],
    @Ctx() ctx: AppContext,
  ): Promise<CreatedEndpoint> {
    return ctx.services.webhooks.create(ctx.em, requireViewer(ctx).user.id, url, events, ctx.meta);
  }

  @Authorized(Role.ADMIN)
  @Mutation(() => Boolean, { description: 'Admins only. Deletes an endpoint with its pending deliveries and log. NOT_FOUND when there is no such endpoint.' })
  deleteWebhookEndpoint(@Arg('id', () => ID, { description: 'The endpoint to delete.' }) id: string, @Ctx() ctx: AppContext): Promise<boolean> {
    return ctx.services.webhooks.delete(ctx.em, requireViewer(ctx).user.id, id, ctx.meta);
  }
}
