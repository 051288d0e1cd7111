// Price tables for explain()'s cost estimate: list prices in USD, per region, dated. Prices change;
// a user with other prices (another region, a discount, Savings Plans) passes their own table in the
// AWS runner's `cost.prices` option.
//
// Source: the public AWS pricing pages for us-east-1 (aws.amazon.com/lambda/pricing,
// /step-functions/pricing, /s3/pricing, /fargate/pricing, /ec2/pricing/on-demand), on-demand list prices as of
// 2025-06-01, first pricing tier (no free tier, no volume discounts).

export interface PriceTable {
  region: string;
  /** When the prices were read from their source (ISO date). */
  asOf: string;
  source: string;
  lambda: {
    /** Per GB-second of duration, by architecture. */
    gbSecond: { x86_64: number; arm64: number };
    /** Per invocation. */
    request: number;
  };
  stepFunctions: {
    /** Standard workflows: per state transition. */
    standardTransition: number;
  };
  s3: {
    /** S3 Standard, per request: PUT, COPY, POST, LIST. */
    putCopyPostList: number;
    /** Per request: GET, SELECT and the rest. */
    get: number;
    /** Per GB-month stored (S3 Standard, first 50 TB). */
    storageGbMonth: number;
  };
  /** Fargate Linux, per vCPU-hour and per GB-hour of memory, by architecture (CPU stages beyond Lambda's limits). */
  fargate?: { vcpuHour: { x86_64: number; arm64: number }; gbHour: { x86_64: number; arm64: number } };
  /** EC2 on-demand Linux instance prices per hour, by instance type (the GPU capacity's instances). */
  ec2Hourly: Record<string, number>;
}

export const PRICES_US_EAST_1: PriceTable = {
  region: 'us-east-1',
  asOf: '2025-06-01',
  source: 'AWS public pricing pages (Lambda, Step Functions, S3, EC2 on-demand), us-east-1',
  lambda: {
    gbSecond: { x86_64: 0.0000166667, arm64: 0.0000133334 },
    request: 0.2 / 1e6,
  },
  stepFunctions: { standardTransition: 0.025 / 1000 },
  s3: { putCopyPostList: 0.005 / 1000, get: 0.0004 / 1000, storageGbMonth: 0.023 },
  fargate: { vcpuHour: { x86_64: 0.04048, arm64: 0.03238 }, gbHour: { x86_64: 0.004445, arm64: 0.00356 } },
  ec2Hourly: {
    'g4dn.xlarge': 0.526,
    'g4dn.2xlarge': 0.752,
    'g4dn.12xlarge': 3.912,
    'g5.xlarge': 1.006,
    'g5.2xlarge': 1.212,
    'g5.12xlarge': 5.672,
    'g6.xlarge': 0.8048,
    'g6.2xlarge': 0.9776,
    'g6e.xlarge': 1.861,
    'p3.2xlarge': 3.06,
    'p4d.24xlarge': 32.7726,
  },
};

/** The built-in tables, by region. */
export const PRICE_TABLES: Readonly<Record<string, PriceTable>> = { 'us-east-1': PRICES_US_EAST_1 };

export const DEFAULT_PRICE_REGION = 'us-east-1';
