// DuckDB in the test process: the reference the relational tests compare fanout's results with (the
// same Parquet files, read by DuckDB's own reader).

export interface DuckDb {
  /** The query's rows as plain JS objects. */
  query(sql: string): Promise<Record<string, unknown>[]>;
  close(): void;
}

export async function openDuckDb(): Promise<DuckDb> {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  return {
    query: async (sql) => (await con.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[],
    close: () => {
      con.closeSync();
      db.closeSync();
    },
  };
}
