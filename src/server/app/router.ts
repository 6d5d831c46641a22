import type { SipRequest } from '../../sip/message/message.ts';

/**
 * One rule of the application router (JSR 289 §15, simplified): the first rule whose conditions all hold picks
 * the app for an initial request. Conditions: method, a pattern on the Request-URI, a pattern on a header.
 */
export interface RouteRule {
  app: string;
  method?: string;
  uri?: string;
  header?: { name: string; pattern: string };
}

interface CompiledRule {
  app: string;
  method: string | undefined;
  uri: RegExp | undefined;
  header: { name: string; pattern: RegExp } | undefined;
}

export class RouterConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'RouterConfigError';
    this.key = key;
  }
}

export class AppRouter {
  readonly defaultApp: string;
  readonly #rules: CompiledRule[];

  constructor(rules: RouteRule[], defaultApp: string, apps: string[]) {
    this.defaultApp = defaultApp;
    this.#rules = rules.map((r, i) => {
      const key = `router.rules[${i}]`;
      if (!apps.includes(r.app)) throw new RouterConfigError(`${key}.app`, `no app named "${r.app}" (loaded: ${apps.join(', ')})`);
      const compile = (what: string, p: string): RegExp => {
        try {
          return new RegExp(p, 'i');
        } catch (err) {
          throw new RouterConfigError(`${key}.${what}`, `bad pattern: ${(err as Error).message}`);
        }
      };
      return {
        app: r.app,
        method: r.method?.toUpperCase(),
        uri: r.uri === undefined ? undefined : compile('uri', r.uri),
        header: r.header === undefined ? undefined : { name: r.header.name, pattern: compile('header.pattern', r.header.pattern) },
      };
    });
  }

  /** The app for an initial request. */
  route(req: SipRequest): string {
    for (const r of this.#rules) {
      if (r.method !== undefined && r.method !== req.method) continue;
      if (r.uri !== undefined && !r.uri.test(req.uriText)) continue;
      if (r.header !== undefined) {
        const v = req.get(r.header.name);
        if (v === undefined || !r.header.pattern.test(v)) continue;
      }
      return r.app;
    }
    return this.defaultApp;
  }
}
