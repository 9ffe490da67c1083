// One task at a time, in the order they came: the agent answers a connection's
// requests in order (a client may pipeline them, and replies carry no order of
// their own on the SSH agent socket), and asks one --confirm question at a time
// on its terminal (two prompts at once would each read the other's answer).

export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /**
   * Runs `task` once every task queued before it has settled; the promise
   * settles as the task does. A failed task does not stop the ones after it.
   */
  run<T>(task: () => T | Promise<T>): Promise<T> {
    const p = this.tail.then(task);
    this.tail = p.catch(() => undefined);
    return p;
  }
}
