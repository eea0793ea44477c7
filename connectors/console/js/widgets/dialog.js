// Modal <dialog>s: focus goes in on open and back to the opener on close; Escape closes.

import { h, id as newId, errorSlot, showError } from '../dom.js';

/**
 * A modal with a form. `build(form)` appends the fields; `onSubmit()` runs on submit
 * (Enter or the submit button): resolve to close, throw to keep it open with the error
 * shown (`placeError` may put it under a field first and return true).
 */
export function formDialog({ title, build, submitLabel = 'Save', danger = false, onSubmit, onError = null, description = null, focusCancel = false }) {
  const hid = newId('dlg');
  const error = errorSlot();
  const submit = h('button', { type: 'submit', class: ['btn', danger ? 'danger solid' : 'primary'] }, submitLabel);
  const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
  const fields = h('div', { class: 'dialog-fields' });
  const form = h('form', { class: 'dialog-inner', novalidate: true },
    h('h2', { id: hid }, title),
    description ? h('p', null, description) : null,
    fields, error,
    h('div', { class: 'dialog-actions' }, cancel, submit));
  const dialog = h('dialog', { 'aria-labelledby': hid }, form);
  const opener = document.activeElement;
  let result;
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });

  cancel.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    dialog.remove();
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    resolveDone(result);
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(error, null);
    submit.disabled = true;
    try {
      result = await onSubmit();
      dialog.close();
    } catch (err) {
      const placed = onError ? onError(err, error) : false;
      if (!placed) {
        showError(error, err);
      }
    } finally {
      submit.disabled = false;
    }
  });

  if (build) build(fields);
  document.body.append(dialog);
  dialog.showModal();
  const first = fields.querySelector('input:not([type=hidden]):not([disabled]), select, textarea');
  (focusCancel ? cancel : (first || submit)).focus();
  return { dialog, form, error, submit, done };
}

/** "Are you sure?" — `action` runs on confirm; its error stays in the dialog. */
export function confirmDialog({ title, message, confirmLabel = 'Delete', action, danger = true }) {
  return formDialog({
    title,
    submitLabel: confirmLabel,
    danger,
    focusCancel: true,
    build: (f) => f.append(h('p', null, message)),
    onSubmit: action,
  }).done;
}
