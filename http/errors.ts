// The error shape of the API contract: { error: { code, message, details? } }.

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly details?: unknown };
}

export function errorBody(code: string, message: string, details?: unknown): ErrorBody {
  return { error: details === undefined ? { code, message } : { code, message, details } };
}

/** An error that knows its HTTP status and contract code; anything else is a 500. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly status: number;
  readonly code: string;
  readonly details?: unknown;
  /** Logged with the request, never sent: what a client must not learn (why a token failed). */
  readonly logged?: string;
  constructor(status: number, code: string, message: string, details?: unknown, logged?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.logged = logged;
  }
}
