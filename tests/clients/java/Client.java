// A service publishing to driftline with org.apache.kafka:kafka-clients.
//
//   java Client produce BOOTSTRAP PREFIX MODEL PAIRS PARTITIONS
//   java Client consume BOOTSTRAP TOPIC COUNT
//
// tests/test_clients.py compiles and runs it; README "Publishing from your service" shows
// the part between the readme markers. JSON is written by hand to need no other library.
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Utils;

public class Client {
    // readme:start
    // The default partitioner hashes the key with murmur2: keyed by prediction_id, a
    // prediction and its label meet on the same partition.
    static KafkaProducer<String, String> producer(String bootstrap) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");
        return new KafkaProducer<>(props, new StringSerializer(), new StringSerializer());
    }

    static String prediction(String id, String model, int version, double value,
                             String features) {
        return String.format(Locale.ROOT, "{\"prediction_id\":\"%s\",\"model\":\"%s\","
            + "\"version\":%d,\"prediction\":%s,\"features\":%s}", id, model, version,
            value, features);
    }

    static String label(String id, double value) {
        return String.format(Locale.ROOT, "{\"prediction_id\":\"%s\",\"label\":%s}", id, value);
    }

    // Events as JSON arrays, one per home partition, each keyed by its first event's id.
    static void publishBatches(KafkaProducer<String, String> producer, String topic,
                               List<String> ids, List<String> events, int partitions) {
        Map<Integer, List<Integer>> groups = new LinkedHashMap<>();
        for (int i = 0; i < ids.size(); i++) {
            int home = Utils.toPositive(Utils.murmur2(ids.get(i).getBytes())) % partitions;
            groups.computeIfAbsent(home, p -> new ArrayList<>()).add(i);
        }
        for (List<Integer> members : groups.values()) {
            List<String> batch = new ArrayList<>();
            for (int i : members) batch.add(events.get(i));
            String key = ids.get(members.get(0));
            producer.send(new ProducerRecord<>(topic, key, "[" + String.join(",", batch) + "]"));
        }
    }
    // readme:end

    static void produce(String bootstrap, String prefix, String model, int pairs,
                        int partitions) throws Exception {
        try (KafkaProducer<String, String> producer = producer(bootstrap)) {
            List<String> ids = new ArrayList<>();
            List<String> predictions = new ArrayList<>();
            List<String> labels = new ArrayList<>();
            for (int i = 0; i < pairs; i++) {
                String id = model + "-" + i;
                // a number, a category, a boolean and a missing value (null)
                String features = String.format(Locale.ROOT,
                    "{\"x\":%d,\"country\":\"%s\",\"vip\":%b,\"age\":%s}", i,
                    new String[] {"DE", "FR", "NL"}[i % 3], i % 7 == 0,
                    i % 10 == 0 ? "null" : Integer.toString(i % 50));
                String p = prediction(id, model, 1, i % 5 + 1, features);
                String l = label(id, 0.0);
                if (i < pairs / 2) { // the first half one event a message, the rest in batches
                    producer.send(new ProducerRecord<>(prefix + "predictions", id, p)).get();
                    producer.send(new ProducerRecord<>(prefix + "labels", id, l)).get();
                } else {
                    ids.add(id);
                    predictions.add(p);
                    labels.add(l);
                }
            }
            publishBatches(producer, prefix + "predictions", ids, predictions, partitions);
            publishBatches(producer, prefix + "labels", ids, labels, partitions);
            String bad = "{\"prediction_id\":\"" + model + "-bad\",\"label\":true}";
            producer.send(new ProducerRecord<>(prefix + "labels", model + "-bad", bad)).get();
            // a multiclass model: classes, with their probabilities
            String[] classes = {"cat", "dog", "owl"};
            for (int i = 0; i < 6; i++) {
                String id = model + "-mc-" + i;
                String p = String.format(Locale.ROOT, "{\"prediction_id\":\"%s\",\"model\":"
                    + "\"%s-mc\",\"version\":1,\"prediction\":\"%s\",\"probabilities\":"
                    + "{\"cat\":0.5,\"dog\":0.3,\"owl\":0.2}}", id, model, classes[i % 3]);
                producer.send(new ProducerRecord<>(prefix + "predictions", id, p)).get();
                String l = String.format(Locale.ROOT, "{\"prediction_id\":\"%s\",\"label\":"
                    + "\"%s\"}", id, classes[(i + 1) % 3]);
                producer.send(new ProducerRecord<>(prefix + "labels", id, l)).get();
            }
            producer.flush();
        }
    }

    static void consume(String bootstrap, String topic, int count) {
        // readme:alerts:start
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", "pager-" + UUID.randomUUID());
        props.put("auto.offset.reset", "earliest");
        try (KafkaConsumer<String, String> consumer =
                 new KafkaConsumer<>(props, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
            int seen = 0;
            while (seen < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> alert : consumer.poll(Duration.ofSeconds(1))) {
                    System.out.println(alert.value()); // a JSON alert event
                    seen++;
                }
            }
            // readme:alerts:end
            if (seen < count) {
                System.err.println("error: " + seen + " of " + count + " records in 90 s");
                System.exit(1);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 6 && args[0].equals("produce")) {
            produce(args[1], args[2], args[3], Integer.parseInt(args[4]), Integer.parseInt(args[5]));
        } else if (args.length == 4 && args[0].equals("consume")) {
            consume(args[1], args[2], Integer.parseInt(args[3]));
        } else {
            System.err.println("usage: Client produce BOOTSTRAP PREFIX MODEL PAIRS PARTITIONS"
                + " | Client consume BOOTSTRAP TOPIC COUNT");
            System.exit(2);
        }
    }
}
