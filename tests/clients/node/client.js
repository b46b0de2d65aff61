// A service publishing to driftline with kafkajs.
//
//   node client.js produce BOOTSTRAP PREFIX MODEL PAIRS PARTITIONS
//   node client.js consume BOOTSTRAP TOPIC COUNT
//
// tests/test_clients.py runs it; README "Publishing from your service" shows the part
// between the readme markers.
const { Kafka, Partitioners, logLevel } = require('kafkajs');

// readme:start
// kafkajs 2's DefaultPartitioner is Java's murmur2: keyed by prediction_id, a prediction
// and its label meet on the same partition (the legacy one would not place them alike).
const partitioner = Partitioners.DefaultPartitioner;

async function connect(bootstrap) {
  const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.WARN });
  const producer = kafka.producer({ createPartitioner: partitioner });
  await producer.connect();
  return { kafka, producer };
}

// One event or a JSON array of events, keyed by a prediction_id.
function message(key, event) {
  return { key, value: JSON.stringify(event) };
}

// Events as JSON arrays, one per home partition, each keyed by its first event's id.
function batches(events, partitions) {
  const home = partitioner();
  const partitionMetadata = [...Array(partitions).keys()].map((p) => ({ partitionId: p, leader: 0 }));
  const groups = new Map();
  for (const event of events) {
    const p = home({ topic: '', partitionMetadata, message: { key: event.prediction_id } });
    if (!groups.has(p)) groups.set(p, []);
    groups.get(p).push(event);
  }
  return [...groups.values()].map((batch) => message(batch[0].prediction_id, batch));
}
// readme:end

async function produce(bootstrap, prefix, model, pairs, partitions) {
  const { producer } = await connect(bootstrap);
  try {
    const predictions = [];
    const labels = [];
    for (let i = 0; i < pairs; i++) {
      const id = `${model}-${i}`;
      const features = { x: i, country: ['DE', 'FR', 'NL'][i % 3], vip: i % 7 === 0,
        age: i % 10 === 0 ? null : i % 50 }; // null: a missing value
      const p = { prediction_id: id, model, version: 1, prediction: (i % 5) + 1, features };
      const l = { prediction_id: id, label: 0 };
      if (i < Math.floor(pairs / 2)) { // the first half one event a message, the rest in batches
        await producer.send({ topic: prefix + 'predictions', acks: -1, messages: [message(id, p)] });
        await producer.send({ topic: prefix + 'labels', acks: -1, messages: [message(id, l)] });
      } else {
        predictions.push(p);
        labels.push(l);
      }
    }
    await producer.send({ topic: prefix + 'predictions', acks: -1, messages: batches(predictions, partitions) });
    await producer.send({ topic: prefix + 'labels', acks: -1, messages: batches(labels, partitions) });
    const bad = { prediction_id: `${model}-bad`, label: true };
    await producer.send({ topic: prefix + 'labels', acks: -1, messages: [message(bad.prediction_id, bad)] });
    const classes = ['cat', 'dog', 'owl']; // a multiclass model: classes, with their probabilities
    for (let i = 0; i < 6; i++) {
      const id = `${model}-mc-${i}`;
      const p = { prediction_id: id, model: `${model}-mc`, version: 1, prediction: classes[i % 3],
        probabilities: { cat: 0.5, dog: 0.3, owl: 0.2 } };
      await producer.send({ topic: prefix + 'predictions', acks: -1, messages: [message(id, p)] });
      const l = { prediction_id: id, label: classes[(i + 1) % 3] };
      await producer.send({ topic: prefix + 'labels', acks: -1, messages: [message(id, l)] });
    }
  } finally {
    await producer.disconnect();
  }
}

async function consume(bootstrap, topic, count) {
  const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.WARN });
  // readme:alerts:start
  const consumer = kafka.consumer({ groupId: `pager-${process.pid}-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${seen} of ${count} records in 90 s`)), 90000);
    consumer.run({
      eachMessage: async ({ message: record }) => {
        const alert = JSON.parse(record.value.toString()); // alert.status, alert.severity, ...
        console.log(JSON.stringify(alert));
        if (++seen >= count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  }).finally(() => consumer.disconnect());
  // readme:alerts:end
}

const [mode, ...args] = process.argv.slice(2);
const run = mode === 'produce' && args.length === 5
  ? produce(args[0], args[1], args[2], Number(args[3]), Number(args[4]))
  : mode === 'consume' && args.length === 3
    ? consume(args[0], args[1], Number(args[2]))
    : Promise.reject(new Error('usage: client.js produce BOOTSTRAP PREFIX MODEL PAIRS PARTITIONS | consume BOOTSTRAP TOPIC COUNT'));
run.then(() => process.exit(0), (err) => { console.error('error:', err.message); process.exit(1); });
