/**
 * Every Redis key and channel name, built in one place. All keys of one
 * delivery share the hash tag {<id>} so one script can touch them on a single
 * Redis Cluster shard. Ids are validated at the edge before they get here.
 */
export interface DeliveryKeys {
  readonly events: string;
  readonly state: string;
  readonly requests: string;
}

export interface RedisKeys {
  delivery(id: string): DeliveryKeys;
  channel(id: string): string;
  /** Inverse of channel(), for messages the subscriber receives. */
  idFromChannel(channel: string): string | undefined;
  readonly index: string;
}

export function createRedisKeys(prefix = ""): RedisKeys {
  const channelPrefix = `${prefix}delivery:{`;
  return {
    delivery: (id) => ({
      events: `${prefix}delivery:{${id}}:events`,
      state: `${prefix}delivery:{${id}}:state`,
      requests: `${prefix}delivery:{${id}}:requests`,
    }),
    channel: (id) => `${channelPrefix}${id}}`,
    idFromChannel: (channel) =>
      channel.startsWith(channelPrefix) && channel.endsWith("}") ? channel.slice(channelPrefix.length, -1) : undefined,
    index: `${prefix}deliveries`,
  };
}
