// Seed 004's 20 trigger types: the human names the seed uses, and the API's type strings
// (connectors/src/domain/events.rs TRIGGER_TYPES).

export const TRIGGER_TYPES = [
  ['appointment_created', 'Appointment created'],
  ['appointment_modified', 'Appointment modified'],
  ['appointment_deleted', 'Appointment deleted'],
  ['participant_reminder_state_changed', 'Participant reminder state changed (any state)'],
  ['participant_invite_sent', 'Participant invite sent'],
  ['participant_confirmed', 'Participant confirmed'],
  ['participant_not_coming', 'Participant not coming'],
  ['participant_needs_to_reschedule', 'Participant needs to reschedule'],
  ['participant_booking_state_changed', 'Participant booking state changed (any state)'],
  ['participant_accepted_booking', 'Participant accepted booking'],
  ['participant_declined_booking', 'Participant declined booking'],
  ['participant_canceled_booking', 'Participant canceled booking'],
  ['participant_check_in_state_changed', 'Participant check-in state changed (any state)'],
  ['participant_replied_to_message', 'Participant replied to message'],
  ['participant_added_to_stop_list', 'Participant added to stop list'],
  ['booking_request_completed', 'Booking request completed'],
  ['booking_page_viewed', 'Booking page viewed'],
  ['message_sent', 'Message sent'],
  ['message_received', 'Message received'],
  ['message_failed', 'Message failed'],
];

const NAMES = new Map(TRIGGER_TYPES);

export function triggerTypeName(type) {
  return NAMES.get(type) || type;
}
