// The tables MikroORM knows about, as EntitySchemas (no decorators: the code runs
// by Node's type stripping). The hot paths use SQL through MikroORM's connection;
// these schemas keep the ORM's view of the schema whole for read models and tooling.

import { EntitySchema } from '@mikro-orm/core';

export interface JournalRow {
  persistenceKey: string;
  sequenceNr: string;
  data: unknown;
  tags: string[];
  createdAt: Date;
}

export const JournalSchema = new EntitySchema<JournalRow>({
  name: 'JournalRow',
  tableName: 'journal',
  properties: {
    persistenceKey: { type: 'text', primary: true },
    sequenceNr: { type: 'bigint', primary: true },
    data: { type: 'json' },
    tags: { type: 'json' },
    createdAt: { type: 'Date' },
  },
});

export interface SnapshotRow {
  persistenceKey: string;
  sequenceNr: string;
  data: unknown;
  createdAt: Date;
}

export const SnapshotSchema = new EntitySchema<SnapshotRow>({
  name: 'SnapshotRow',
  tableName: 'snapshot',
  properties: {
    persistenceKey: { type: 'text', primary: true },
    sequenceNr: { type: 'bigint' },
    data: { type: 'json' },
    createdAt: { type: 'Date' },
  },
});

export interface ReminderRow {
  entityKey: string;
  name: string;
  shard: number;
  dueAt: Date;
}

export const ReminderSchema = new EntitySchema<ReminderRow>({
  name: 'ReminderRow',
  tableName: 'reminder',
  properties: {
    entityKey: { type: 'text', primary: true },
    name: { type: 'text', primary: true },
    shard: { type: 'integer' },
    dueAt: { type: 'Date' },
  },
});

export const entities = [JournalSchema, SnapshotSchema, ReminderSchema];
