using System.Globalization;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using LbAllocator.Controller;
using LbAllocator.Kubernetes.Crds;
using Microsoft.Extensions.Hosting;

namespace LbAllocator.NetTests;

/// <summary>
/// A small cluster made of network namespaces. The LAN: three "nodes" and a "client" on one bridge (in a
/// namespace of its own), 192.0.2.0/24 and 2001:db8::/64. Beside it a management network, so that the LAN
/// and the API path fail independently: a second bridge namespace, the nodes' mgmt0 (198.51.100.1x/24) and
/// one root-namespace veth holding 198.51.100.1, where a real kube-apiserver listens (audited, RBAC as the
/// judge). The install manifests are applied with kubectl; the controller runs in this process and a speaker
/// process per node, each on its own ServiceAccount's token. Everything is deleted afterwards, and what a
/// test run that died left behind (keyed by its process id) is removed before a new lab starts.
/// </summary>
public sealed partial class Lab : IAsyncLifetime
{
    public const string InstallNamespace = "lballocator-system";
    public static readonly string[] Nodes = ["node1", "node2", "node3"];

    /// <summary>The client's address on the LAN (nodes are .11, .12, .13).</summary>
    public const string ClientIp = "192.0.2.100";

    /// <summary>The API server's address on the management network (nodes are 198.51.100.11, .12, .13).</summary>
    public const string ApiIp = "198.51.100.1";

    public const string ControllerUser = "system:serviceaccount:" + InstallNamespace + ":lballocator-controller";
    public const string SpeakerUser = "system:serviceaccount:" + InstallNamespace + ":lballocator-speaker";

    /// <summary>Marks the rules that cut a node from the API server, to delete exactly those.</summary>
    private const string CutComment = "lballocator-lab-cut";

    private readonly string _prefix = $"lbt{Environment.ProcessId}";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}");
    private readonly Dictionary<string, Shell.Background> _speakers = [];
    /// <summary>The machine-wide lab lock's file (see <see cref="LockMachineAsync"/>).</summary>
    private const string MachineLockPath = "/tmp/lballocator-lab.lock";

    private FileStream? _machineLock;
    private IHost? _controller;
    private string _speakerKubeconfig = "";

    /// <summary>The real API server; the lab's own requests go through <see cref="Client"/> as the admin.</summary>
    public KubeApiServer Server { get; private set; } = null!;

    public k8s.Kubernetes Client { get; private set; } = null!;

    /// <summary>Node name to the MAC of its eth0, as the client sees it in ARP replies.</summary>
    public Dictionary<string, string> Macs { get; } = [];

    public string ClientNs => $"{_prefix}-client";

    public string ClientMac { get; private set; } = "";

    public string NodeNs(string node) => $"{_prefix}-{node}";

    private string LanNs => $"{_prefix}-lan";

    private string MgmtNs => $"{_prefix}-mgmt";

    /// <summary>The speakers' service account files, mounted where a pod has them when <see cref="SpeakersInCluster"/>.</summary>
    public string ServiceAccountDir => Path.Combine(_dir, "speaker-serviceaccount");

    /// <summary>The management network's end in the root namespace (deleted with its peer, named for leftovers).</summary>
    private string RootVeth => $"{_prefix}-m";

    public IReadOnlyList<string> SpeakerLog(string node) => _speakers[node].Lines;

    /// <summary>The tests' refresh interval: short, so a test sees several refresh rounds in seconds.</summary>
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Extra `lballocator speaker` options for every speaker: in the tests only a short gratuitous refresh interval;
    /// the benchmark runs the defaults, and its variants their own options.
    /// </summary>
    public IReadOnlyList<string> SpeakerOptions { get; set; } = DefaultSpeakerOptions;

    private static readonly string[] DefaultSpeakerOptions =
        ["--gratuitous-refresh-interval", RefreshInterval.TotalSeconds.ToString(CultureInfo.InvariantCulture)];

    /// <summary>The lballocator binary speakers started from now on run (see <see cref="CliPath"/>); the footprint benchmark's published binaries.</summary>
    public string SpeakerCli { get; set; } = CliPath;

    /// <summary>
    /// Run the speakers with the client configuration of a pod instead of a kubeconfig file: the service account's
    /// token and CA mounted at /var/run/secrets/kubernetes.io/serviceaccount (in a mount namespace of their own) and
    /// KUBERNETES_SERVICE_HOST/PORT, as the DaemonSet runs them. The footprint benchmark does: reading a kubeconfig
    /// loads the client's YAML type map, about 20 MiB that a deployed speaker never has.
    /// </summary>
    public bool SpeakersInCluster { get; init; }

    /// <summary>Environment of speakers started from now on (the footprint benchmark's runtime variants); none in the tests.</summary>
    public Dictionary<string, string> SpeakerEnvironment { get; } = [];

    /// <summary>The speakers' --log-level: Debug for reading a failed test; the footprint benchmark runs them as deployed.</summary>
    public string SpeakerLogLevel { get; init; } = "Debug";

    public async Task InitializeAsync()
    {
        if (RealApi.SkipReason is not null)
        {
            return; // every test is skipped with the reason
        }

        _machineLock = await LockMachineAsync();
        await RemoveLeftoversAsync();
        Directory.CreateDirectory(_dir);
        await BuildNetworkAsync();

        // After the network: the server binds to the root-namespace end of the management network.
        Server = await KubeApiServer.StartAsync(bindAddress: ApiIp, audit: true);
        Client = Server.CreateClient();
        await InstallAsync();
        await SeedAsync();
        var controllerKubeconfig = Server.WriteKubeconfig("controller", await Server.ServiceAccountTokenAsync(InstallNamespace, "lballocator-controller"));
        var speakerToken = await Server.ServiceAccountTokenAsync(InstallNamespace, "lballocator-speaker");
        _speakerKubeconfig = Server.WriteKubeconfig("speaker", speakerToken);
        Directory.CreateDirectory(ServiceAccountDir);
        await File.WriteAllTextAsync(Path.Combine(ServiceAccountDir, "token"), speakerToken);
        await File.WriteAllTextAsync(Path.Combine(ServiceAccountDir, "namespace"), InstallNamespace);
        File.Copy(Server.CertificateFile, Path.Combine(ServiceAccountDir, "ca.crt"));
        _controller = ControllerHost.Build(new Dictionary<string, string?>
        {
            ["Controller:Kubeconfig"] = controllerKubeconfig,
            ["Controller:Identity"] = "lab-controller",
            ["Status:Address"] = "127.0.0.1:0",
            ["Logging:LogLevel:Default"] = "Warning",
        });
        await _controller.StartAsync();
        foreach (var node in Nodes)
        {
            StartSpeaker(node);
        }

        await WaitForSpeakersAsync(Nodes);
    }

    public async Task DisposeAsync()
    {
        // For a failure to be read afterwards: LBALLOCATOR_LAB_LOGS=DIR keeps each speaker's output as DIR/NODE.log.
        if (Environment.GetEnvironmentVariable("LBALLOCATOR_LAB_LOGS") is { Length: > 0 } logs)
        {
            Directory.CreateDirectory(logs);
            foreach (var (node, speaker) in _speakers)
            {
                await File.WriteAllLinesAsync(Path.Combine(logs, $"{node}.log"), speaker.Lines);
            }
        }

        foreach (var speaker in _speakers.Values)
        {
            speaker.Dispose();
        }

        if (_controller is not null)
        {
            await _controller.StopAsync();
            _controller.Dispose();
        }

        var forbidden = new List<AuditEvent>();
        if (Server is not null)
        {
            forbidden.AddRange(Forbidden());
            await Server.DisposeAsync();
        }

        await DeleteNamespacesAsync(_prefix);
        await Shell.RunAsync("ip", "link", "delete", RootVeth);
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }

        _machineLock?.Dispose();

        // The whole run, not only the tests that look: a component refused anything is a broken install.
        if (forbidden.Count > 0)
        {
            throw new InvalidOperationException("requests of the components answered 403 during the lab run:\n" + string.Join("\n", forbidden.Select(e => $"{e.User}: {e.Call}")));
        }
    }

    /// <summary>Requests of the controller or a speaker that RBAC refused (403) so far.</summary>
    public IEnumerable<AuditEvent> Forbidden() =>
        Server.AuditEvents().Where(e => e.Code == 403 && e.User is ControllerUser or SpeakerUser);

    /// <summary>
    /// Each lab test takes one when it starts and asserts at its end that RBAC refused none of the components'
    /// requests meanwhile: a verb missing from deploy/ fails the test that exercised it, whatever it asserts.
    /// </summary>
    public RefusalCheck CheckRefusals() => new(this, [.. Forbidden().Select(e => e.AuditId)]);

    public sealed class RefusalCheck(Lab lab, HashSet<string> before)
    {
        public Task AssertNoneAsync()
        {
            var refused = lab.Forbidden().Where(e => !before.Contains(e.AuditId)).Select(e => $"{e.User}: {e.Call}").Distinct().ToList();
            Assert.True(refused.Count == 0, "RBAC refused requests of the components during this test (403):\n" + string.Join("\n", refused));
            return Task.CompletedTask;
        }
    }

    /// <summary>
    /// Starts (or restarts) the speaker process of a node inside its namespace; without <paramref name="netRaw"/>
    /// it has no capability at all, as a DaemonSet whose securityContext lost NET_RAW (capture cannot open).
    /// </summary>
    public void StartSpeaker(string node, bool netRaw = true)
    {
        if (_speakers.Remove(node, out var old))
        {
            old.Dispose();
        }

        // As the DaemonSet runs it: root, but NET_RAW as the only capability; JSON logs; status on 7472.
        string[] speaker =
        [
            "setpriv", netRaw ? "--bounding-set=-all,+net_raw" : "--bounding-set=-all", "--inh-caps=-all", "--",
            .. Launch(SpeakerCli), "speaker", .. SpeakersInCluster ? Array.Empty<string>() : ["--kubeconfig", _speakerKubeconfig],
            "--log-level", SpeakerLogLevel, "--log-format", "json", "--status-address", "0.0.0.0:7472", .. SpeakerOptions,
        ];
        var environment = new Dictionary<string, string>(SpeakerEnvironment) { ["NODE_NAME"] = node };
        if (SpeakersInCluster)
        {
            // A tmpfs over /run in a private mount namespace, so nothing of the host's /run is touched.
            speaker =
            [
                "unshare", "--mount", "--", "sh", "-c",
                "mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && mount --bind \"$0\" /run/secrets/kubernetes.io/serviceaccount && exec \"$@\"",
                ServiceAccountDir, .. speaker,
            ];
            environment["KUBERNETES_SERVICE_HOST"] = ApiIp;
            environment["KUBERNETES_SERVICE_PORT"] = Server.Url.Port.ToString(CultureInfo.InvariantCulture);
        }

        _speakers[node] = new Shell.Background("ip", ["netns", "exec", NodeNs(node), .. speaker], environment);
    }

    /// <summary>
    /// Cuts the node off from the API server, not from the LAN: its mgmt0 drops every packet both ways, so
    /// requests and open watches hang (nothing is refused or reset), as a dead switch or route would.
    /// </summary>
    public async Task CutApiAsync(string node)
    {
        foreach (var (chain, direction) in new[] { ("INPUT", "-i"), ("OUTPUT", "-o") })
        {
            await Shell.MustAsync("ip", "netns", "exec", NodeNs(node), "iptables", "-I", chain, direction, "mgmt0", "-m", "comment", "--comment", CutComment, "-j", "DROP");
        }
    }

    /// <summary>Lifts <see cref="CutApiAsync"/>: the hung connections carry on as TCP retransmits.</summary>
    public async Task RestoreApiAsync(string node)
    {
        foreach (var (chain, direction) in new[] { ("INPUT", "-i"), ("OUTPUT", "-o") })
        {
            // Absent when the node was not cut: nothing to do then.
            await Shell.RunAsync("ip", "netns", "exec", NodeNs(node), "iptables", "-D", chain, direction, "mgmt0", "-m", "comment", "--comment", CutComment, "-j", "DROP");
        }
    }

    /// <summary>Takes the node's LAN interface (eth0) down or up, as a pulled cable or a failed switch port.</summary>
    public async Task SetLanLinkAsync(string node, bool up) =>
        await Shell.MustAsync("ip", "-n", NodeNs(node), "link", "set", "eth0", up ? "up" : "down");

    /// <summary>
    /// Makes the LAN bridge a switch that snoops MLD, as many real ones do: it runs a querier and forwards multicast to
    /// a node's port only for the groups the node joined (no flooding of unknown groups to nodes); off floods again.
    /// </summary>
    public async Task SetMldSnoopingAsync(bool on)
    {
        await Shell.MustAsync("ip", "-n", LanNs, "link", "set", "br0", "type", "bridge", "mcast_snooping", "1", "mcast_querier", on ? "1" : "0");
        foreach (var node in Nodes)
        {
            await Shell.MustAsync("bridge", "-n", LanNs, "link", "set", "dev", NodePort(node), "mcast_flood", on ? "off" : "on");
        }
    }

    /// <summary>The multicast groups the LAN bridge forwards to each port, as `bridge mdb show` lists them.</summary>
    public async Task<string> BridgeGroupsAsync() => await Shell.MustAsync("bridge", "-n", LanNs, "mdb", "show");

    /// <summary>The node's port on the LAN bridge.</summary>
    public static string NodePort(string node) => $"p{Array.IndexOf(Nodes, node) + 1}";

    /// <summary>Labels the node to be excluded from external load balancers (or removes the label): its addresses move.</summary>
    public async Task SetExcludedAsync(string node, bool excluded) =>
        await Client.CoreV1.PatchNodeAsync(
            new V1Patch("{\"metadata\":{\"labels\":{\"" + Core.Election.ExcludeLabel + "\":" + (excluded ? "\"\"" : "null") + "}}}", V1Patch.PatchType.MergePatch), node);

    /// <summary>Resets the node's connections to the API server (ss -K): its watches end at once, as when a proxy or the server drops them.</summary>
    public async Task<int> ResetApiConnectionsAsync(string node)
    {
        var killed = await Shell.MustAsync("ip", "netns", "exec", NodeNs(node), "ss", "-K", "-t", "dst", ApiIp);
        return killed.Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l.Contains(ApiIp, StringComparison.Ordinal));
    }

    /// <summary>GET from the node's speaker status endpoint (as the kubelet's probes and Prometheus do); status code and body.</summary>
    public async Task<(int Code, string Body)> SpeakerStatusAsync(string node, string path)
    {
        var (_, output) = await Shell.RunAsync("ip", "netns", "exec", NodeNs(node), "curl", "-s", "-w", "\n%{http_code}", $"http://127.0.0.1:7472{path}");
        var cut = output.LastIndexOf('\n');
        return (int.Parse(output[(cut + 1)..], System.Globalization.CultureInfo.InvariantCulture), output[..cut]);
    }

    public Shell.Background Speaker(string node) => _speakers[node];

    /// <summary>
    /// The binary the speakers run: LBALLOCATOR_CLI when set (the test command sets it to the published NativeAOT
    /// binary, the one the image ships), else lballocator.dll in the CLI's output folder of this test build's
    /// configuration.
    /// </summary>
    private static string CliPath
    {
        get
        {
            if (LbAllocator.TestApiServer.PublishedCli.Path is { } cli)
            {
                return cli;
            }

            // .../tests/LbAllocator.NetTests/bin/<Configuration>/<tfm>/
            var tfm = new DirectoryInfo(AppContext.BaseDirectory);
            var configuration = tfm.Parent!;
            var repo = configuration.Parent!.Parent!.Parent!.Parent!;
            return Path.Combine(repo.FullName, "src", "LbAllocator.Cli", "bin", configuration.Name, tfm.Name, "lballocator.dll");
        }
    }

    /// <summary>The command line that runs a binary: an assembly through dotnet, a native executable as it is.</summary>
    public static string[] Launch(string cli) => cli.EndsWith(".dll", StringComparison.Ordinal) ? ["dotnet", cli] : [cli];

    /// <summary>
    /// Brings every node back as a test found it, whatever a failed test before it left behind: the LAN link up, the
    /// speaker running with the default options, all of them ready. Tests that take nodes down call it first.
    /// </summary>
    public async Task RestoreNodesAsync()
    {
        SpeakerOptions = DefaultSpeakerOptions;
        foreach (var node in Nodes)
        {
            await SetLanLinkAsync(node, up: true);
            if (_speakers[node].HasExited)
            {
                StartSpeaker(node);
            }
        }

        await WaitForSpeakersAsync(Nodes);
    }

    /// <summary>Waits until every named speaker has a lease (it started and reached the API server).</summary>
    /// <param name="ready">
    /// Also wait until each is ready: a member of the segment, answering. False for one that cannot answer.
    /// </param>
    public async Task WaitForSpeakersAsync(IEnumerable<string> nodes, bool ready = true)
    {
        await Eventually.HoldsAsync(async () =>
        {
            var leases = await Client.CoordinationV1.ListNamespacedLeaseAsync(InstallNamespace);
            var missing = nodes.Where(n => !leases.Items.Any(l => l.Spec?.HolderIdentity == n)).ToList();
            return missing.Count == 0 ? null
                : $"no lease yet for {string.Join(", ", missing)}; their output:\n" + string.Join("\n", missing.Select(n => $"--- {n}:\n" + string.Join("\n", _speakers[n].Lines.TakeLast(20))));
        }, TimeSpan.FromSeconds(60));
        if (!ready)
        {
            return;
        }

        foreach (var node in nodes)
        {
            await Eventually.HoldsAsync(async () =>
            {
                var (code, body) = await SpeakerStatusAsync(node, "/readyz");
                return code == 200 && body.Contains("ok lan: member of the segment, answering", StringComparison.Ordinal) ? null : $"{node} not ready: {code} {body}";
            }, TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>The MAC that answers ARP for the address from the client, or null if nobody answers within a second.</summary>
    public async Task<string?> ArpingAsync(string ip)
    {
        var (_, output) = await Shell.RunAsync("ip", "netns", "exec", ClientNs, "arping", "-c", "1", "-w", "1", "-I", "eth0", ip);
        var match = ReplyMac().Match(output);
        return match.Success ? match.Groups[1].Value.ToLowerInvariant() : null;
    }

    /// <summary>
    /// The MAC the client's kernel resolves the IPv6 address to by Neighbor Discovery (its solicitation, the answer
    /// taken into its neighbour table), or null if nobody answers within a second. Not ndisc6: it drops every
    /// advertisement from a link-local source for a global target (its interface check compares scope ids), and
    /// RFC 4861 has advertisements come from an address of the sending interface, which a VIP is not.
    /// </summary>
    public async Task<string?> NdpAsync(string ip)
    {
        await Shell.RunAsync("ip", "-n", ClientNs, "-6", "neigh", "flush", "to", ip, "dev", "eth0");
        await SendFromClientAsync(ip);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(1);
        do
        {
            var (_, entry) = await Shell.RunAsync("ip", "-n", ClientNs, "-6", "neigh", "show", "to", ip, "dev", "eth0");
            if (NeighborMac().Match(entry) is { Success: true } match)
            {
                return match.Groups[1].Value.ToLowerInvariant();
            }

            await Task.Delay(50);
        }
        while (DateTime.UtcNow < deadline);
        return null;
    }

    /// <summary>One UDP datagram from the client to the address (the discard port): its kernel resolves the address first.</summary>
    public async Task SendFromClientAsync(string ip) =>
        await Shell.MustAsync("ip", "netns", "exec", ClientNs, "bash", "-c", $"echo > /dev/udp/{ip}/9");

    /// <summary>Every MAC that answers three broadcast ARP requests for the address from the client (empty: nobody).</summary>
    public async Task<HashSet<string>> ArpAnswerersAsync(string ip)
    {
        var (_, output) = await Shell.RunAsync("ip", "netns", "exec", ClientNs, "arping", "-b", "-c", "3", "-w", "3", "-I", "eth0", ip);
        return [.. ReplyMac().Matches(output).Select(m => m.Groups[1].Value.ToLowerInvariant())];
    }

    /// <summary>
    /// Every MAC that answers two Neighbor Solicitations for the address from the client (empty: nobody), as seen on
    /// the wire: ndisc6 itself ignores advertisements from a link-local source, which is where speakers send them from.
    /// </summary>
    public async Task<HashSet<string>> NeighborAnswerersAsync(string ip)
    {
        using var capture = await Shell.CaptureAsync(ClientNs, "-n", "-e", "-l", "icmp6 and ip6[40] = 136");
        await Shell.RunAsync("ip", "netns", "exec", ClientNs, "ndisc6", "-m", "-r", "2", "-w", "1000", ip, "eth0");
        await Task.Delay(TimeSpan.FromMilliseconds(200)); // tcpdump prints what it saw
        return [.. capture.Lines.Select(l => AdvertisementFrom().Match(l)).Where(m => m.Success && m.Groups["target"].Value == ip).Select(m => m.Groups["from"].Value)];
    }

    /// <summary>The node whose MAC answers ARP for the address, waiting until someone does.</summary>
    public Task<string> WaitForArpOwnerAsync(string ip, string? not = null, TimeSpan? timeout = null) =>
        WaitForOwnerAsync("ARP", ArpingAsync, ip, not, timeout);

    /// <summary>The node whose MAC answers a Neighbor Solicitation for the IPv6 address, waiting until someone does.</summary>
    public Task<string> WaitForNdpOwnerAsync(string ip, string? not = null, TimeSpan? timeout = null) =>
        WaitForOwnerAsync("NDP", NdpAsync, ip, not, timeout);

    private async Task<string> WaitForOwnerAsync(string protocol, Func<string, Task<string?>> ask, string ip, string? not, TimeSpan? timeout)
    {
        string? owner = null;
        await Eventually.HoldsAsync(async () =>
        {
            var mac = await ask(ip);
            owner = Macs.FirstOrDefault(kv => kv.Value == mac).Key;
            return owner is not null && owner != not ? null : $"{protocol} for {ip} answered by {mac ?? "nobody"}";
        }, timeout ?? TimeSpan.FromSeconds(30));
        return owner!;
    }

    /// <summary>The IPv6 multicast groups the node's eth0 has joined, as `ip -6 maddr show dev eth0` lists them.</summary>
    public async Task<IReadOnlyList<string>> MulticastGroupsAsync(string node)
    {
        var output = await Shell.MustAsync("ip", "-n", NodeNs(node), "-6", "maddr", "show", "dev", "eth0");
        return [.. MulticastGroup().Matches(output).Select(m => m.Groups[1].Value)];
    }

    /// <summary>The link-local address of the node's eth0.</summary>
    public async Task<string> LinkLocalAsync(string node)
    {
        var output = await Shell.MustAsync("ip", "-n", NodeNs(node), "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link");
        return LinkLocal().Match(output) is { Success: true } match ? match.Groups[1].Value : throw new InvalidOperationException($"{node} has no link-local address: {output}");
    }

    public async Task<V1Service> CreateServiceAsync(string name, string? ip = null, string? policy = null, string[]? families = null)
    {
        var service = new V1Service
        {
            Metadata = new V1ObjectMeta
            {
                Name = name,
                NamespaceProperty = "default",
                Annotations = ip is null ? null : new Dictionary<string, string> { ["lballocator.io/loadBalancerIPs"] = ip },
            },
            Spec = new V1ServiceSpec
            {
                Type = "LoadBalancer",
                Ports = [new V1ServicePort { Port = 80, Protocol = "TCP" }],
                Selector = new Dictionary<string, string> { ["app"] = name },
                ExternalTrafficPolicy = policy,
                IpFamilies = families,
                IpFamilyPolicy = families is { Length: 2 } ? "RequireDualStack" : null,
            },
        };
        await Client.CoreV1.CreateNamespacedServiceAsync(service, "default");
        V1Service? addressed = null;
        await Eventually.HoldsAsync(async () =>
        {
            addressed = await Client.CoreV1.ReadNamespacedServiceAsync(name, "default");
            return addressed.Status?.LoadBalancer?.Ingress?.Count > 0 ? null : $"{name} has no address yet";
        }, TimeSpan.FromSeconds(30));
        return addressed!;
    }

    public async Task<V1Alpha1ServiceL2Status?> L2StatusAsync(string service)
    {
        var raw = await Client.CustomObjects.ListNamespacedCustomObjectAsync(Api.Group, Api.Version, InstallNamespace, "servicel2statuses");
        var list = KubernetesJson.Deserialize<V1Alpha1ServiceL2StatusList>(KubernetesJson.Serialize(raw));
        return list.Items?.FirstOrDefault(s => s.Status?.ServiceName == service);
    }

    private async Task BuildNetworkAsync()
    {
        await BuildLanAsync();
        await BuildManagementAsync();
    }

    /// <summary>The management network: a bridge in its own namespace, the nodes' mgmt0 and the root-namespace end the API server binds to.</summary>
    private async Task BuildManagementAsync()
    {
        await Shell.MustAsync("ip", "netns", "add", MgmtNs);
        await Shell.MustAsync("ip", "-n", MgmtNs, "link", "add", "br0", "type", "bridge");
        await Shell.MustAsync("ip", "-n", MgmtNs, "link", "set", "br0", "up");
        await Shell.MustAsync("ip", "link", "add", RootVeth, "type", "veth", "peer", "name", "root", "netns", MgmtNs);
        await Shell.MustAsync("ip", "-n", MgmtNs, "link", "set", "root", "master", "br0", "up");
        await Shell.MustAsync("ip", "addr", "add", $"{ApiIp}/24", "dev", RootVeth);
        await Shell.MustAsync("ip", "link", "set", RootVeth, "up");
        for (var i = 0; i < Nodes.Length; i++)
        {
            var ns = NodeNs(Nodes[i]);
            await Shell.MustAsync("ip", "-n", MgmtNs, "link", "add", $"m{i + 1}", "type", "veth", "peer", "name", "mgmt0", "netns", ns);
            await Shell.MustAsync("ip", "-n", MgmtNs, "link", "set", $"m{i + 1}", "master", "br0", "up");
            await Shell.MustAsync("ip", "-n", ns, "addr", "add", $"198.51.100.{11 + i}/24", "dev", "mgmt0");
            await Shell.MustAsync("ip", "-n", ns, "link", "set", "mgmt0", "up");
        }
    }

    private async Task BuildLanAsync()
    {
        await Shell.MustAsync("ip", "netns", "add", LanNs);
        await Shell.MustAsync("ip", "-n", LanNs, "link", "add", "br0", "type", "bridge");
        await Shell.MustAsync("ip", "-n", LanNs, "link", "set", "br0", "up");
        foreach (var ns in Nodes.Select(NodeNs).Append(ClientNs))
        {
            await Shell.MustAsync("ip", "netns", "add", ns);
            // No duplicate address detection: the addresses are ours, and DAD would delay the test by seconds.
            await Shell.MustAsync("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0");
            await Shell.MustAsync("ip", "-n", ns, "link", "set", "lo", "up");
        }

        foreach (var node in Nodes)
        {
            await AddLanLinkAsync(node);
        }

        await AddLanLinkAsync(ClientNs, "pc", 100);
        ClientMac = (await Shell.MustAsync("ip", "netns", "exec", ClientNs, "cat", "/sys/class/net/eth0/address")).Trim();
    }

    /// <summary>
    /// A host on the LAN that is not a node and runs no speaker, using <paramref name="addresses"/> (ADDR/LEN) as any
    /// Linux host does (its kernel answers ARP and NDP for them); <paramref name="name"/> at most 13 characters (its
    /// bridge port is f-NAME). Its namespace is deleted by the returned object, and
    /// with the lab's others should a test fail first.
    /// </summary>
    public async Task<ForeignHost> AddForeignHostAsync(string name, params string[] addresses)
    {
        var ns = $"{_prefix}-{name}";
        await Shell.MustAsync("ip", "netns", "add", ns);
        var host = new ForeignHost(ns);
        await Shell.MustAsync("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0");
        await Shell.MustAsync("ip", "-n", LanNs, "link", "add", $"f-{name}", "type", "veth", "peer", "name", "eth0", "netns", ns);
        await Shell.MustAsync("ip", "-n", LanNs, "link", "set", $"f-{name}", "master", "br0", "up");
        await Shell.MustAsync("ip", "-n", ns, "link", "set", "eth0", "up");
        foreach (var address in addresses)
        {
            string[] add = ["-n", ns, "addr", "add", address, "dev", "eth0"];
            await Shell.MustAsync("ip", address.Contains(':', StringComparison.Ordinal) ? [.. add, "nodad"] : add);
        }

        host.Mac = (await Shell.MustAsync("ip", "netns", "exec", ns, "cat", "/sys/class/net/eth0/address")).Trim();
        return host;
    }

    /// <summary>
    /// Drops the node's ARP replies on the LAN bridge (nft, bridge family: the speaker sends through a packet socket,
    /// which no netfilter hook of its own namespace sees) until the returned object is disposed; heartbeats and
    /// everything else still pass.
    /// </summary>
    public async Task<IAsyncDisposable> DropArpRepliesAsync(string node)
    {
        await Shell.MustAsync("ip", "netns", "exec", LanNs, "nft", "add", "table", "bridge", "lbt");
        var undo = new Undo(() => Shell.RunAsync("ip", "netns", "exec", LanNs, "nft", "delete", "table", "bridge", "lbt"));
        await Shell.MustAsync("ip", "netns", "exec", LanNs, "nft", "add", "chain", "bridge", "lbt", "forward", "{ type filter hook forward priority 0; }");
        await Shell.MustAsync("ip", "netns", "exec", LanNs, "nft", "add", "rule", "bridge", "lbt", "forward", "ether", "saddr", Macs[node], "arp", "operation", "reply", "drop");
        return undo;
    }

    private sealed class Undo(Func<Task> action) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await action();
    }

    /// <summary>A host made by <see cref="AddForeignHostAsync"/>: its namespace and MAC.</summary>
    public sealed class ForeignHost(string ns) : IAsyncDisposable
    {
        public string Namespace { get; } = ns;

        public string Mac { get; internal set; } = "";

        /// <summary>Deletes the namespace, and with it the host's link to the LAN: the host is gone.</summary>
        public async ValueTask DisposeAsync() => await Shell.RunAsync("ip", "netns", "delete", Namespace);
    }

    /// <summary>Deletes the node's LAN interface (eth0, and with it its bridge port), as a removed NIC or a deleted VLAN would.</summary>
    public async Task DeleteLanLinkAsync(string node) =>
        await Shell.MustAsync("ip", "-n", NodeNs(node), "link", "delete", "eth0");

    /// <summary>
    /// Gives the node its LAN interface (eth0 on the bridge, its addresses, up); after <see cref="DeleteLanLinkAsync"/>
    /// a new one, with a new MAC (<see cref="Macs"/> is updated) and a new interface index.
    /// </summary>
    public async Task AddLanLinkAsync(string node)
    {
        await AddLanLinkAsync(NodeNs(node), NodePort(node), 11 + Array.IndexOf(Nodes, node));
        Macs[node] = (await Shell.MustAsync("ip", "netns", "exec", NodeNs(node), "cat", "/sys/class/net/eth0/address")).Trim();
    }

    private async Task AddLanLinkAsync(string ns, string port, int host)
    {
        await Shell.MustAsync("ip", "-n", LanNs, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns);
        await Shell.MustAsync("ip", "-n", LanNs, "link", "set", port, "master", "br0", "up");
        await Shell.MustAsync("ip", "-n", ns, "link", "set", "eth0", "up");
        await Shell.MustAsync("ip", "-n", ns, "addr", "add", $"192.0.2.{host}/24", "dev", "eth0");
        await Shell.MustAsync("ip", "-n", ns, "addr", "add", $"2001:db8::{host}/64", "dev", "eth0", "nodad");
    }

    /// <summary>`kubectl apply -k deploy/`, as a user installs it (the Deployment and DaemonSet never get pods: no kubelet here).</summary>
    private async Task InstallAsync()
    {
        await Server.KubectlMustAsync("apply", "-k", Path.Combine(InstallManifests.RepoRoot, "deploy"));
        await Server.KubectlMustAsync("wait", "--for=condition=Established", "--timeout=60s",
            "crd/ipaddresspools.lballocator.io", "crd/l2advertisements.lballocator.io", "crd/servicel2statuses.lballocator.io");
    }

    /// <summary>
    /// What a cluster has without us and the lone API server lacks: Nodes. Then a pool, and an advertisement
    /// for the LAN only, as an operator with a separate management network writes it.
    /// </summary>
    private async Task SeedAsync()
    {
        foreach (var node in Nodes)
        {
            await Client.CoreV1.CreateNodeAsync(new V1Node { Metadata = new V1ObjectMeta { Name = node, Labels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = node } } });
        }

        await Client.CustomObjects.CreateNamespacedCustomObjectAsync(
            new V1Alpha1IPAddressPool { Metadata = new V1ObjectMeta { Name = "lab" }, Spec = new IPAddressPoolSpec { Addresses = ["192.0.2.200-192.0.2.219", "192.0.2.226-192.0.2.239", "2001:db8::200-2001:db8::22f"] } },
            Api.Group, Api.Version, InstallNamespace, "ipaddresspools");
        await Client.CustomObjects.CreateNamespacedCustomObjectAsync(
            new V1Alpha1L2Advertisement { Metadata = new V1ObjectMeta { Name = "lab" }, Spec = new L2AdvertisementSpec { Interfaces = ["eth0"] } },
            Api.Group, Api.Version, InstallNamespace, "l2advertisements");
    }

    /// <summary>
    /// One lab per machine at a time: two would both put the API address on a root-namespace veth and steal each
    /// other's replies. A lab of another test run or benchmark holding the lock (an flock(2)) is waited for.
    /// </summary>
    private static async Task<FileStream> LockMachineAsync()
    {
        while (true)
        {
            try
            {
                return new FileStream(MachineLockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                await Task.Delay(500);
            }
        }
    }

    /// <summary>Removes namespaces and root-namespace veths of earlier runs whose process is gone (a crashed or killed test run).</summary>
    private static async Task RemoveLeftoversAsync()
    {
        var (_, list) = await Shell.RunAsync("ip", "netns", "list");
        foreach (var pid in LeftoverNamespace().Matches(list).Select(Pid).Where(Dead).Distinct())
        {
            await DeleteNamespacesAsync($"lbt{pid}");
        }

        var (_, links) = await Shell.RunAsync("ip", "-o", "link", "show");
        foreach (var pid in LeftoverVeth().Matches(links).Select(Pid).Where(Dead).Distinct())
        {
            await Shell.RunAsync("ip", "link", "delete", $"lbt{pid}-m");
        }

        static int Pid(Match match) => int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        static bool Dead(int pid) => !Directory.Exists($"/proc/{pid}");
    }

    private static async Task DeleteNamespacesAsync(string prefix)
    {
        var (_, list) = await Shell.RunAsync("ip", "netns", "list");
        foreach (var name in list.Split('\n').Select(l => l.Split(' ')[0]).Where(n => n.StartsWith(prefix + "-", StringComparison.Ordinal)))
        {
            // Processes still inside would keep it alive: kill them first.
            var (_, pids) = await Shell.RunAsync("ip", "netns", "pids", name);
            foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                await Shell.RunAsync("kill", "-KILL", pid.Trim());
            }

            await Shell.RunAsync("ip", "netns", "delete", name);
        }
    }

    [GeneratedRegex(@"\[([0-9A-Fa-f:]{17})\]")]
    private static partial Regex ReplyMac();

    // tcpdump -n -e: "12:00:00.000000 02:00:00:00:00:01 > 33:33:00:00:00:01, ethertype IPv6 (0x86dd), length 86:
    // fe80::1 > ff02::1: ICMP6, neighbor advertisement, tgt is 2001:db8::21a, length 32"
    [GeneratedRegex(@"(?<from>[0-9a-f:]{17}) > [0-9a-f:]{17}, .*: ICMP6, neighbor advertisement, tgt is (?<target>[0-9a-f:]+),")]
    private static partial Regex AdvertisementFrom();

    // "2001:db8::200 lladdr 02:..:01 REACHABLE" in `ip -6 neigh show`; none while INCOMPLETE or FAILED.
    [GeneratedRegex(@"lladdr ([0-9A-Fa-f:]{17})")]
    private static partial Regex NeighborMac();

    // "inet6 ff02::1:ff00:21a" in `ip -6 maddr show`.
    [GeneratedRegex(@"inet6 ([0-9a-f:]+)")]
    private static partial Regex MulticastGroup();

    // "3: eth0    inet6 fe80::1c2f:.../64 scope link" in `ip -6 -o addr show`.
    [GeneratedRegex(@"inet6 (fe80:[0-9a-f:]+)/")]
    private static partial Regex LinkLocal();

    [GeneratedRegex(@"^lbt(\d+)-", RegexOptions.Multiline)]
    private static partial Regex LeftoverNamespace();

    // "12: lbt4242-m@if3: <BROADCAST,..." in `ip -o link show`.
    [GeneratedRegex(@"^\d+: lbt(\d+)-m[@:]", RegexOptions.Multiline)]
    private static partial Regex LeftoverVeth();

    private sealed class V1Alpha1ServiceL2StatusList
    {
        [System.Text.Json.Serialization.JsonPropertyName("items")]
        public IList<V1Alpha1ServiceL2Status>? Items { get; set; }
    }
}

internal static class Eventually
{
    /// <summary>
    /// Polls until the check returns null (holds); fails with the check's last complaint otherwise. An API
    /// error (a fault a test made) counts as "not yet".
    /// </summary>
    public static async Task HoldsAsync(Func<Task<string?>> check, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        string? complaint;
        while ((complaint = await Try()) is not null)
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"still not true after {timeout.TotalSeconds:F0} s: {complaint}");
            }

            await Task.Delay(100);
        }

        async Task<string?> Try()
        {
            try
            {
                return await check();
            }
            catch (k8s.Autorest.HttpOperationException e)
            {
                return $"API error {e.Response.StatusCode}";
            }
        }
    }
}
