// How a transaction key can be printed; apart from txkey.ts so the agent's
// client (on kmgr fetch's start-up path) can name them without loading it.
export const OUTPUT_FORMATS = ['pem', 'jwk', 'raw', 'hex', 'base64', 'openssh'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
