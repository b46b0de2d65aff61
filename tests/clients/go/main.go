// A service publishing to driftline with franz-go (github.com/twmb/franz-go/pkg/kgo).
//
//	client produce BOOTSTRAP PREFIX MODEL PAIRS PARTITIONS
//	client consume BOOTSTRAP TOPIC COUNT
//
// tests/test_clients.py builds and runs it; README "Publishing from your service" shows
// the part between the readme markers.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

// readme:start
type Prediction struct {
	PredictionID string             `json:"prediction_id"`
	Model        string             `json:"model"`
	Version      int                `json:"version"`
	Prediction   float64            `json:"prediction"`
	Features     map[string]any     `json:"features"` // numbers, strings, booleans, nil
}

type Label struct {
	PredictionID string  `json:"prediction_id"`
	Label        float64 `json:"label"`
}

// franz-go's default partitioner hashes keys with murmur2, like Java's: a record keyed by
// prediction_id lands on that prediction's home partition. Tansu (the embedded broker)
// closes the connection on franz-go's ApiVersions v4: ask for Kafka 3.8's versions.
// Its default snappy compression is fine: driftline reads every codec Kafka has.
func newClient(bootstrap string, opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(bootstrap),
		kgo.MaxVersions(kversion.V3_8_0()),
		kgo.RequiredAcks(kgo.AllISRAcks())}, opts...)...)
}

// publish sends one event, keyed by its prediction_id.
func publish(ctx context.Context, cl *kgo.Client, topic, id string, event any) error {
	value, err := json.Marshal(event)
	if err != nil {
		return err
	}
	return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(id), Value: value}).FirstErr()
}

// publishBatches sends events as JSON arrays, one per home partition, each keyed by the
// prediction_id of its first event, so that every event arrives on its home partition.
func publishBatches[E any](ctx context.Context, cl *kgo.Client, topic string, partitions int,
	ids []string, events []E) error {
	home := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	groups := map[int][]int{}
	for i, id := range ids {
		p := home.Partition(&kgo.Record{Key: []byte(id)}, partitions)
		groups[p] = append(groups[p], i)
	}
	for _, members := range groups {
		batch := make([]E, 0, len(members))
		for _, i := range members {
			batch = append(batch, events[i])
		}
		if err := publish(ctx, cl, topic, ids[members[0]], batch); err != nil {
			return err
		}
	}
	return nil
}

// readme:end

func produce(bootstrap, prefix, model string, pairs, partitions int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := newClient(bootstrap)
	if err != nil {
		return err
	}
	defer cl.Close()
	var ids []string
	var predictions []Prediction
	var labels []Label
	for i := 0; i < pairs; i++ {
		id := fmt.Sprintf("%s-%d", model, i)
		var age any // null: a missing value
		if i%10 != 0 {
			age = float64(i % 50)
		}
		features := map[string]any{"x": float64(i), "country": []string{"DE", "FR", "NL"}[i%3],
			"vip": i%7 == 0, "age": age}
		p := Prediction{id, model, 1, float64(i%5) + 1, features}
		l := Label{id, 0}
		if i < pairs/2 { // the first half one event a message, the rest in batches
			if err := publish(ctx, cl, prefix+"predictions", id, p); err != nil {
				return err
			}
			if err := publish(ctx, cl, prefix+"labels", id, l); err != nil {
				return err
			}
			continue
		}
		ids, predictions, labels = append(ids, id), append(predictions, p), append(labels, l)
	}
	if err := publishBatches(ctx, cl, prefix+"predictions", partitions, ids, predictions); err != nil {
		return err
	}
	if err := publishBatches(ctx, cl, prefix+"labels", partitions, ids, labels); err != nil {
		return err
	}
	bad := map[string]any{"prediction_id": model + "-bad", "label": true}
	if err := publish(ctx, cl, prefix+"labels", model+"-bad", bad); err != nil {
		return err
	}
	classes := []string{"cat", "dog", "owl"} // a multiclass model: classes, with probabilities
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("%s-mc-%d", model, i)
		p := map[string]any{"prediction_id": id, "model": model + "-mc", "version": 1,
			"prediction":    classes[i%3],
			"probabilities": map[string]float64{"cat": 0.5, "dog": 0.3, "owl": 0.2}}
		if err := publish(ctx, cl, prefix+"predictions", id, p); err != nil {
			return err
		}
		l := map[string]any{"prediction_id": id, "label": classes[(i+1)%3]}
		if err := publish(ctx, cl, prefix+"labels", id, l); err != nil {
			return err
		}
	}
	return nil
}

// consume prints the values of the first count records of topic, one a line.
func consume(bootstrap, topic string, count int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// readme:alerts:start
	cl, err := newClient(bootstrap, kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(fmt.Sprintf("pager-%d", time.Now().UnixNano())),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	for seen := 0; seen < count; {
		fetches := cl.PollFetches(ctx)
		if err := fetches.Err0(); err != nil {
			return err
		}
		fetches.EachRecord(func(r *kgo.Record) {
			var alert map[string]any
			if json.Unmarshal(r.Value, &alert) == nil {
				fmt.Println(string(r.Value)) // alert["status"], alert["severity"], ...
				seen++
			}
		})
	}
	// readme:alerts:end
	return nil
}

func main() {
	var err error
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	switch {
	case len(os.Args) == 7 && os.Args[1] == "produce":
		err = produce(os.Args[2], os.Args[3], os.Args[4], atoi(os.Args[5]), atoi(os.Args[6]))
	case len(os.Args) == 5 && os.Args[1] == "consume":
		err = consume(os.Args[2], os.Args[3], atoi(os.Args[4]))
	default:
		err = fmt.Errorf("usage: client produce BOOTSTRAP PREFIX MODEL PAIRS PARTITIONS | " +
			"client consume BOOTSTRAP TOPIC COUNT")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
