export * from './uri.ts';
export * from './address.ts';
export * from './via.ts';
export * from './headers.ts';
export * from './message.ts';
export * from './parser.ts';
