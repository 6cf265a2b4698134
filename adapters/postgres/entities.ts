// The tables MikroORM knows about, defined with its property builders (no decorators:
// the code runs by Node's type stripping; the row types are inferred from these).
// The hot paths use SQL through MikroORM's connection; these keep the ORM's view of
// the schema whole for read models and tooling.

import { defineEntity, p } from '@mikro-orm/core';

export const JournalSchema = defineEntity({
  name: 'JournalRow',
  tableName: 'journal',
  properties: {
    persistenceKey: p.text().primary(),
    sequenceNr: p.bigint('string').primary(),
    data: p.json<unknown>(),
    tags: p.json<string[]>(),
    createdAt: p.datetime(),
  },
});

/** One row per entity: the latest snapshot. */
export const SnapshotSchema = defineEntity({
  name: 'SnapshotRow',
  tableName: 'snapshot',
  properties: { persistenceKey: p.text().primary(), sequenceNr: p.bigint('string'), data: p.json<unknown>(), createdAt: p.datetime() },
});

export const ReminderSchema = defineEntity({
  name: 'ReminderRow',
  tableName: 'reminder',
  properties: { entityKey: p.text().primary(), name: p.text().primary(), shard: p.integer(), dueAt: p.datetime() },
});

export const entities = [JournalSchema, SnapshotSchema, ReminderSchema];
