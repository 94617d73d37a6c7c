using System.Globalization;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace LbAllocator.TestApiServer;

/// <summary>A change, as a watch stream carries it.</summary>
public sealed record Change(long Revision, ResourceType Resource, string? Namespace, string Type, JsonObject Body);

/// <summary>Why a request was refused: becomes a v1 Status response.</summary>
public sealed class ApiException(int code, string reason, string message) : Exception(message)
{
    public int Code { get; } = code;
    public string Reason { get; } = reason;
}

/// <summary>
/// Objects as JSON under one revision counter (etcd's), with a bounded history for watches and the
/// update rules of kube-apiserver: optimistic concurrency on resourceVersion, status subresource
/// separation, generation bumps on spec changes, no-op writes that change nothing.
/// </summary>
public sealed class Store
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(ResourceType, string, string), JsonObject> _objects = [];
    private readonly List<Change> _history = [];
    private readonly List<Watcher> _watchers = [];
    private readonly int _historyLimit;
    private long _revision = 1;
    private long _historyStart = 1;

    public Store(int historyLimit = 10_000) => _historyLimit = historyLimit;

    public long Revision
    {
        get
        {
            lock (_lock)
            {
                return _revision;
            }
        }
    }

    public JsonObject? Get(ResourceType type, string? ns, string name)
    {
        lock (_lock)
        {
            return _objects.TryGetValue((type, ns ?? "", name), out var obj) ? (JsonObject)obj.DeepClone() : null;
        }
    }

    public (List<JsonObject> Items, long Revision) List(ResourceType type, string? ns, Func<JsonObject, bool> filter)
    {
        lock (_lock)
        {
            var items = _objects
                .Where(kv => kv.Key.Item1 == type && (ns is null || kv.Key.Item2 == ns) && filter(kv.Value))
                .OrderBy(kv => kv.Key.Item2, StringComparer.Ordinal).ThenBy(kv => kv.Key.Item3, StringComparer.Ordinal)
                .Select(kv => (JsonObject)kv.Value.DeepClone())
                .ToList();
            return (items, _revision);
        }
    }

    public JsonObject Create(ResourceType type, string? ns, JsonObject body)
    {
        lock (_lock)
        {
            var meta = Metadata(body);
            var name = meta["name"]?.GetValue<string>();
            if (string.IsNullOrEmpty(name) && meta["generateName"]?.GetValue<string>() is { } prefix)
            {
                name = prefix + Guid.NewGuid().ToString("N")[..5];
            }

            if (string.IsNullOrEmpty(name))
            {
                throw new ApiException(422, "Invalid", $"{type.Kind} \"\" is invalid: metadata.name: Required value: name or generateName is required");
            }

            if (_objects.ContainsKey((type, ns ?? "", name)))
            {
                throw new ApiException(409, "AlreadyExists", $"{type.Plural} \"{name}\" already exists");
            }

            var obj = (JsonObject)body.DeepClone();
            obj["apiVersion"] = type.ApiVersion;
            obj["kind"] = type.Kind;
            meta = Metadata(obj);
            meta["name"] = name;
            if (type.Namespaced)
            {
                meta["namespace"] = ns;
            }

            meta["uid"] = Guid.NewGuid().ToString();
            meta["creationTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
            meta["generation"] = 1L;
            if (type.HasStatus)
            {
                obj.Remove("status"); // status is not set on create when it has its own subresource
            }

            return Commit(type, ns, name, obj, "ADDED");
        }
    }

    /// <summary>PUT on the object (status ignored when it has a subresource) or on /status (only status taken).</summary>
    public JsonObject Update(ResourceType type, string? ns, string name, JsonObject body, bool statusOnly)
    {
        lock (_lock)
        {
            if (Metadata(body)["uid"]?.GetValue<string>() is { } uid && Get(type, ns, name) is null)
            {
                // As kube-apiserver: the UID is a precondition, checked against an object it no longer has.
                throw new ApiException(409, "Conflict", $"Operation cannot be fulfilled on {type.Plural} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: ");
            }

            var current = Existing(type, ns, name);
            var version = Metadata(body)["resourceVersion"]?.GetValue<string>();
            if (string.IsNullOrEmpty(version) && !type.AllowUnconditionalUpdate)
            {
                throw new ApiException(422, "Invalid", $"{type.Kind} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update");
            }

            CheckVersion(type, name, current, version);
            return Replace(type, ns, name, current, body, statusOnly);
        }
    }

    /// <summary>Applies a patch function to the current object, then the same rules as an update.</summary>
    public JsonObject Patch(ResourceType type, string? ns, string name, Func<JsonObject, JsonObject> patch, bool statusOnly)
    {
        lock (_lock)
        {
            var current = Existing(type, ns, name);
            var patched = patch((JsonObject)current.DeepClone());
            var version = Metadata(patched)["resourceVersion"]?.GetValue<string>();
            CheckVersion(type, name, current, version);
            return Replace(type, ns, name, current, patched, statusOnly);
        }
    }

    public JsonObject Delete(ResourceType type, string? ns, string name)
    {
        lock (_lock)
        {
            var current = Existing(type, ns, name);
            _objects.Remove((type, ns ?? "", name));
            var deleted = (JsonObject)current.DeepClone();
            _revision++;
            Metadata(deleted)["resourceVersion"] = _revision.ToString(CultureInfo.InvariantCulture);
            Record(new Change(_revision, type, ns, "DELETED", deleted));
            return (JsonObject)deleted.DeepClone();
        }
    }

    /// <summary>
    /// Registers a watch. From a resourceVersion: the changes after it (410 if history no longer reaches
    /// back that far); without one: the current objects as ADDED, then changes.
    /// </summary>
    public Watcher Watch(ResourceType type, string? ns, string? resourceVersion, Func<JsonObject, bool> filter)
    {
        lock (_lock)
        {
            var watcher = new Watcher(type, ns, filter);
            if (string.IsNullOrEmpty(resourceVersion) || resourceVersion == "0")
            {
                foreach (var obj in List(type, ns, filter).Items)
                {
                    watcher.Offer(new Change(_revision, type, ns, "ADDED", obj));
                }
            }
            else
            {
                var from = long.Parse(resourceVersion, CultureInfo.InvariantCulture);
                if (from < _historyStart - 1)
                {
                    throw new ApiException(410, "Expired", $"too old resource version: {from} ({_historyStart})");
                }

                foreach (var change in _history.Where(c => c.Revision > from))
                {
                    watcher.Offer(change);
                }
            }

            _watchers.Add(watcher);
            return watcher;
        }
    }

    public void Unwatch(Watcher watcher)
    {
        lock (_lock)
        {
            _watchers.Remove(watcher);
        }
    }

    /// <summary>How many watches are open now, so a test can act once its watch has reached the server.</summary>
    public int OpenWatches
    {
        get
        {
            lock (_lock)
            {
                return _watchers.Count;
            }
        }
    }

    /// <summary>Closes every open watch abruptly, as a dropped connection or an API server restart would.</summary>
    public void DropWatches()
    {
        lock (_lock)
        {
            foreach (var watcher in _watchers)
            {
                watcher.Drop();
            }

            _watchers.Clear();
        }
    }

    /// <summary>Forgets the history, so a watch from any earlier resourceVersion gets 410 Gone.</summary>
    public void CompactHistory()
    {
        lock (_lock)
        {
            _history.Clear();
            _historyStart = _revision + 1;
        }
    }

    private JsonObject Replace(ResourceType type, string? ns, string name, JsonObject current, JsonObject body, bool statusOnly)
    {
        JsonObject next;
        if (statusOnly)
        {
            next = (JsonObject)current.DeepClone();
            next["status"] = body["status"]?.DeepClone();
        }
        else
        {
            next = (JsonObject)body.DeepClone();
            next["apiVersion"] = type.ApiVersion;
            next["kind"] = type.Kind;
            var meta = Metadata(next);
            var old = Metadata(current);
            foreach (var fixedField in new[] { "name", "namespace", "uid", "creationTimestamp", "generation" })
            {
                meta[fixedField] = old[fixedField]?.DeepClone();
            }

            if (type.HasStatus)
            {
                next["status"] = current["status"]?.DeepClone();
            }

            if (type.HasStatus && !JsonNode.DeepEquals(next["spec"], current["spec"]))
            {
                meta["generation"] = (old["generation"]?.GetValue<long>() ?? 1) + 1;
            }
        }

        Metadata(next)["resourceVersion"] = Metadata(current)["resourceVersion"]?.DeepClone();
        if (JsonNode.DeepEquals(next, current))
        {
            return (JsonObject)current.DeepClone(); // a no-op write changes nothing, not even the resourceVersion
        }

        return Commit(type, ns, name, next, "MODIFIED");
    }

    private JsonObject Commit(ResourceType type, string? ns, string name, JsonObject obj, string eventType)
    {
        _revision++;
        Metadata(obj)["resourceVersion"] = _revision.ToString(CultureInfo.InvariantCulture);
        _objects[(type, ns ?? "", name)] = obj;
        Record(new Change(_revision, type, ns, eventType, (JsonObject)obj.DeepClone()));
        return (JsonObject)obj.DeepClone();
    }

    private void Record(Change change)
    {
        _history.Add(change);
        if (_history.Count > _historyLimit)
        {
            _history.RemoveRange(0, _history.Count - _historyLimit);
            _historyStart = _history[0].Revision;
        }

        foreach (var watcher in _watchers)
        {
            watcher.Offer(change);
        }
    }

    private JsonObject Existing(ResourceType type, string? ns, string name) =>
        _objects.TryGetValue((type, ns ?? "", name), out var obj)
            ? obj
            : throw new ApiException(404, "NotFound", $"{type.Plural} \"{name}\" not found");

    private static void CheckVersion(ResourceType type, string name, JsonObject current, string? version)
    {
        if (!string.IsNullOrEmpty(version) && version != Metadata(current)["resourceVersion"]?.GetValue<string>())
        {
            var what = type.Group.Length == 0 ? type.Plural : $"{type.Plural}.{type.Group}";
            throw new ApiException(409, "Conflict", $"Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again");
        }
    }

    private static JsonObject Metadata(JsonObject obj)
    {
        if (obj["metadata"] is not JsonObject meta)
        {
            meta = [];
            obj["metadata"] = meta;
        }

        return meta;
    }
}

/// <summary>One open watch: the changes it should see, in order, until it is dropped.</summary>
public sealed class Watcher(ResourceType type, string? ns, Func<JsonObject, bool> filter)
{
    private readonly Channel<Change> _changes = Channel.CreateUnbounded<Change>();

    public ChannelReader<Change> Changes => _changes.Reader;

    public bool Dropped { get; private set; }

    public void Offer(Change change)
    {
        if (change.Resource == type && (ns is null || change.Namespace == ns) && filter(change.Body))
        {
            _changes.Writer.TryWrite(change);
        }
    }

    public void Drop()
    {
        Dropped = true;
        _changes.Writer.TryComplete();
    }
}
